"""PagerDuty Events API v2: one event per alert, deduplicated on the alert's fingerprint.

202 is success; 400 (invalid event) is permanent; 429 and 5xx are retried. PagerDuty reads
`payload`, `links` and `client` only on trigger events, so acknowledge and resolve carry just the
routing key, action and dedup key.
"""
from __future__ import annotations

import hashlib
from typing import Any

from pydantic import SecretStr, field_validator

from pipemon.model import AlertState, AlertView, Notification, NotifyAction
from pipemon.notify.base import HttpChannel, HttpChannelConfig, HttpRequest, HttpUrl
from pipemon.notify.render import is_resolved, iso, truncate

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyConfig(HttpChannelConfig):
    routing_key: SecretStr
    url: HttpUrl = EVENTS_URL
    send_resolved: bool = True
    client: str = "pipemon"

    @field_validator("routing_key")
    @classmethod
    def _nonempty(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v


def event_action(n: Notification, a: AlertView) -> str:
    """By the notification's action, but an alert's own state wins: a resolved alert riding along in a
    firing group must not be re-triggered."""
    if is_resolved(n, a):
        return "resolve"
    if n.action is NotifyAction.ACKNOWLEDGE or a.state is AlertState.ACKNOWLEDGED:
        return "acknowledge"
    return "trigger"  # trigger, repeat, escalate, test


def dedup_key(fingerprint: str) -> str:
    # PagerDuty caps dedup_key at 255 characters; cutting could merge two alerts, hashing cannot.
    return fingerprint if len(fingerprint) <= 255 else hashlib.sha256(fingerprint.encode()).hexdigest()


def event(n: Notification, a: AlertView, routing_key: str, client: str) -> dict[str, Any]:
    action = event_action(n, a)
    ev: dict[str, Any] = {"routing_key": routing_key, "event_action": action,
                          "dedup_key": dedup_key(a.fingerprint)}
    if action != "trigger":
        return ev
    details: dict[str, Any] = {"description": a.description}
    for k in ("run_id", "error", "failed_task", "output"):
        if (v := getattr(a, k)) is not None:
            details[k] = truncate(v, 4000) if k in ("error", "output") else v
    details["labels"] = dict(a.labels)
    details["occurrences"] = a.occurrences
    if a.root_cause is not None:
        details["root_cause"] = a.root_cause
    if a.root_cause_team is not None:
        details["root_cause_team"] = a.root_cause_team
    ev["payload"] = {
        "summary": truncate(a.summary or f"{a.pipeline}: {a.kind}", 1024),
        "source": a.pipeline,
        "severity": a.severity.value,
        "timestamp": iso(a.last_seen),  # when pipemon last saw the condition: this event's time
        "component": a.pipeline.rpartition("/")[2] or a.pipeline,
        "group": a.team,
        "class": a.kind,
        "custom_details": details,
    }
    if a.url:
        ev["links"] = [{"href": a.url, "text": f"{a.pipeline} in pipemon"}]
    ev["client"] = client
    if n.external_url:
        ev["client_url"] = n.external_url
    return ev


class PagerDutyChannel(HttpChannel[PagerDutyConfig]):
    kind = "pagerduty"
    config_model = PagerDutyConfig
    default_rate = (2.0, 20)  # Events API v2: 120 events a minute per routing key

    def build(self, n: Notification) -> list[HttpRequest]:
        key = self.config.routing_key.get_secret_value()
        return [HttpRequest("POST", self.config.url, event(n, a, key, self.config.client)) for a in n.alerts]
