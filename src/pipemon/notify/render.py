"""Words and times that several channels share, so Slack's header and the email subject agree."""
from __future__ import annotations

from datetime import UTC, datetime

from pipemon.model import AlertState, AlertView, Notification, NotifyAction, Severity

LABEL = {
    NotifyAction.TRIGGER: "FIRING",
    NotifyAction.REPEAT: "STILL FIRING",
    NotifyAction.ESCALATE: "ESCALATED",
    NotifyAction.ACKNOWLEDGE: "ACKNOWLEDGED",
    NotifyAction.RESOLVE: "RESOLVED",
    NotifyAction.TEST: "TEST",
}
SEVERITY_EMOJI = {Severity.CRITICAL: "🔴", Severity.ERROR: "🟠", Severity.WARNING: "🟡", Severity.INFO: "🔵"}
ACTION_EMOJI = {NotifyAction.RESOLVE: "✅", NotifyAction.ACKNOWLEDGE: "👀", NotifyAction.TEST: "🧪"}

# "[FIRING:2] payments: pipeline failures" reads better than "failure alerts".
KIND_PLURAL = {
    "failure": "pipeline failures",
    "late": "late pipelines",
    "sla_miss": "SLA misses",
    "running_long": "long-running pipelines",
    "duration_anomaly": "duration anomalies",
    "volume_anomaly": "volume anomalies",
    "failure_rate": "failure-rate alerts",
    "schema_change": "schema changes",
    "upstream_failure": "upstream failures",
    "extra_run": "extra runs",
    "receiver_failing": "failing receivers",
}

GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager sends as endsAt of a firing alert


def iso(t: float) -> str:
    """RFC 3339 in UTC, whole seconds unless the time has a fraction."""
    spec = "seconds" if float(t).is_integer() else "milliseconds"
    return datetime.fromtimestamp(t, UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def truncate(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def worst(n: Notification) -> Severity:
    return max((a.severity for a in n.alerts), key=lambda s: s.level, default=Severity.INFO)


def emoji(n: Notification) -> str:
    return ACTION_EMOJI.get(n.action) or SEVERITY_EMOJI[worst(n)]


def label(n: Notification) -> str:
    return LABEL[n.action]


def is_resolved(n: Notification, a: AlertView) -> bool:
    return n.action is NotifyAction.RESOLVE or a.state is AlertState.RESOLVED


def title(n: Notification) -> str:
    """One alert: its summary. Several: the group's label values and what they are."""
    if len(n.alerts) == 1:
        return n.alerts[0].summary
    kinds = list(dict.fromkeys(a.kind for a in n.alerts))
    what = ", ".join(KIND_PLURAL.get(k, f"{k.replace('_', ' ')} alerts") for k in kinds) or "no alerts"
    group = " ".join(v for v in n.group_labels.values() if v)
    return f"{group}: {what}" if group else what


def oneline(s: str) -> str:
    return " ".join(s.split())
