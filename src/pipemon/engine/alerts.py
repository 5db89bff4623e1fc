"""Alerts: conditions become alerts with a stable fingerprint and a lifecycle (firing -> acknowledged ->
resolved). One open alert per fingerprint (pipeline + kind [+ metric]); repeats of the condition only bump
its occurrences and last-seen time; it resolves when every condition behind it has cleared.

Dependency-aware suppression (beyond Alertmanager): a `late`, `sla_miss` or `volume_anomaly` alert whose
pipeline has an upstream (any number of hops, through datasets or `depends_on`) with an open `failure` or
`late` alert is *attached* to that root cause instead of paging. When a root cause opens, each other team
owning pipelines downstream of it gets one `upstream_failure` notice. When the root cause resolves, every
attached alert and notice resolves, and each downstream pipeline is held for a fresh grace period (its
usual run duration plus its schedule's grace) before its own lateness may page: it is waiting for the
upstream's new data, not broken.

One page per root cause: while a pipeline's `failure` alert is open, the conditions that failure already
explains (`explains`: its failure-rate burst, a retry of the failing run running long, the slots it leaves
unserved) join that alert as evidence (`Alert.evidence`, shown in the API and in the next notification's
detail) instead of opening alerts of their own; the failure alert resolves when the failure itself clears,
and what is still open of its evidence then becomes alerts of its own. Pure: no I/O; time passed in.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipemon.config import Settings
from pipemon.engine.judge import Judge, Signal, SignalType
from pipemon.engine.health import at, late_by
from pipemon.engine.lineage import Lineage
from pipemon.engine.severity import Impact, severity
from pipemon.model import AlertKind, AlertState, AlertView, Severity

ROOT_KINDS = frozenset({AlertKind.FAILURE, AlertKind.LATE})
ATTACHABLE = frozenset({AlertKind.LATE, AlertKind.SLA_MISS, AlertKind.VOLUME_ANOMALY})
METRIC_KINDS = frozenset({AlertKind.DURATION_ANOMALY, AlertKind.VOLUME_ANOMALY, AlertKind.SCHEMA_CHANGE})
UPSTREAM_FAILURE = AlertKind.UPSTREAM_FAILURE
FAILURE = AlertKind.FAILURE
# Evidence that the failure is more than a blip: it pages a failure still below `page_after_failures`.
PAGES_HELD_FAILURE = frozenset({AlertKind.RUNNING_LONG, AlertKind.LATE, AlertKind.SLA_MISS})


def explains(failure: Alert | None, kind: str, run_started: float | None = None,
             failing_since: float | None = None) -> str | None:
    """Whether an open `failure` alert already explains a new condition of the same pipeline, and why (the
    text shown on the evidence), or None: the condition needs an alert of its own.

    - failure_rate: the burst is made of the very failures the alert is about;
    - running_long: a run that started at or after the first failure of the streak is a retry of the
      failing run (a run that was already going before it is not explained by it);
    - late: the failure is open, so nothing succeeded since it; the slots owed since are owed because it
      fails;
    - sla_miss: likewise, the deadline passed without a success because the pipeline fails.
    Other kinds (anomalies of successful runs, schema changes, extra runs) are not explained by a failure.
    """
    if failure is None or not failure.open or failure.kind != FAILURE:
        return None
    if kind == AlertKind.FAILURE_RATE:
        return "a burst of the same failures"
    if kind == AlertKind.RUNNING_LONG:
        since = failure.started_at if failing_since is None else failing_since
        if run_started is not None and run_started >= since:
            return "a retry of the failing run"
        return None
    if kind == AlertKind.LATE:
        return "a slot the failing pipeline has not served"
    if kind == AlertKind.SLA_MISS:
        return "nothing succeeded since the failure"
    return None


def fingerprint(pipeline: str, kind: str, metric: str = "") -> str:
    return hashlib.blake2b(f"{pipeline}\x1f{kind}\x1f{metric}".encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class PipelineInfo:
    team: str
    tier: int | None
    tags: dict[str, str]
    namespace: str
    page_after_failures: int | None = None


@dataclass
class Alert:
    fingerprint: str
    pipeline: str
    team: str
    kind: AlertKind
    labels: dict[str, str]
    severity: Severity
    summary: str
    description: str
    started_at: float
    last_seen: float
    state: AlertState = AlertState.FIRING
    occurrences: int = 1
    conditions: set[str] = field(default_factory=set)
    run_id: str | None = None
    error: str | None = None
    failed_task: str | None = None
    output: str | None = None              # failure: the last lines of the failing task's trace or output
    score: float = 0.0
    severity_why: list[str] = field(default_factory=list)
    resolved_at: float | None = None
    resolved_by: str | None = None
    acked_at: float | None = None
    acked_by: str | None = None
    root_cause: str | None = None          # fingerprint of the root-cause alert this one is attached to
    root_pipeline: str | None = None
    root_team: str | None = None
    held_until: float | None = None        # not notified before (upstream recovering)
    page_after: int | None = None          # a failure pages from this many consecutive failures on
    notified: dict[str, str] = field(default_factory=dict)   # receiver -> last action sent
    evidence: list[dict[str, Any]] = field(default_factory=list)  # conditions this alert explains (joined)
    overdue_since: float | None = None     # late: the first unserved slot (the figure is computed when shown)
    id: int | None = None

    @property
    def open(self) -> bool:
        return self.state is not AlertState.RESOLVED

    def held(self, now: float) -> str | None:
        """Why this alert is not to be notified now (it is still recorded and visible)."""
        if self.root_cause is not None:
            return f"attached to the upstream failure of {self.root_pipeline}"
        if self.held_until is not None and now < self.held_until:
            return f"waiting for {self.root_pipeline or 'the upstream'}'s new data"
        if self.below_page_after(self.page_after):
            return f"{self.occurrences} of {self.page_after} consecutive failures before paging"
        return None

    def below_page_after(self, page_after: int | None) -> bool:
        """A failure waiting for more consecutive failures before it pages (unless joined evidence, a retry
        running long or a missed slot, shows it is more than a blip)."""
        return (self.kind == FAILURE and bool(page_after) and self.occurrences < (page_after or 0)
                and not any(e["kind"] in PAGES_HELD_FAILURE for e in self.evidence))

    def detail(self) -> str:
        """The description with the failing task's error and output, and the evidence that joined this
        alert, as a notification shows it."""
        text = self.description
        if self.output:
            text += "\n" + self.output
        if not self.evidence:
            return text
        lines = []
        for e in self.evidence:
            notes = [e["why"]] + ([f"seen {e['count']} times"] if e["count"] > 1 else []) + (
                ["cleared"] if e.get("cleared_at") is not None else [])
            lines.append(f"- {e['kind']} ({', '.join(notes)}): {e['text']}")
        return text + "\nAlso explained by this failure:\n" + "\n".join(lines)

    def view(self, url: str | None = None, now: float | None = None) -> AlertView:
        """As a notification shows it at `now`: a late alert says how late its first unserved slot is then."""
        summary, detail = self.summary, self.detail()
        if now is not None and self.overdue_since is not None and self.open:
            figure = f"{late_by(now - self.overdue_since)} late"
            summary = f"{self.pipeline} is {figure}: {self.summary.split(': ', 1)[-1]}"
            detail = f"{figure}: {detail}"
        return AlertView(fingerprint=self.fingerprint, pipeline=self.pipeline, team=self.team, kind=self.kind,
                         severity=self.severity, state=self.state, summary=summary,
                         description=detail, labels=dict(self.labels), started_at=self.started_at,
                         last_seen=self.last_seen, occurrences=self.occurrences, resolved_at=self.resolved_at,
                         run_id=self.run_id, error=self.error, failed_task=self.failed_task,
                         output=self.output, root_cause=self.root_pipeline, root_cause_team=self.root_team,
                         url=url)

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["kind"] = str(self.kind)
        d["severity"] = self.severity.value
        d["state"] = self.state.value
        d["conditions"] = sorted(self.conditions)
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> Alert:
        d = dict(d)
        d["kind"] = AlertKind(d["kind"])
        d["severity"] = Severity(d["severity"])
        d["state"] = AlertState(d["state"])
        d["conditions"] = set(d["conditions"])
        return Alert(**d)


@dataclass
class Change:
    alert: Alert
    what: str     # opened | updated | resolved | acknowledged


class AlertBook:
    """The open alerts, kept current from the Judge's signals."""

    def __init__(self, settings: Settings, judge: Judge, lineage: Lineage,
                 info: Callable[[str], PipelineInfo]) -> None:
        self.settings = settings
        self.ev = judge
        self.lineage = lineage
        self.info = info
        self.open: dict[str, Alert] = {}
        # Several writers (partitioned workers): the open root-kind alerts of pipelines another writer keeps
        # (all its open alerts when inhibition rules need sources), as last read from the store
        # (`mirror_foreign`); read-only here: roots to attach to like our own, sources of inhibition.
        self.foreign: dict[str, Alert] = {}
        self.holdoff: dict[str, tuple[float, str, str]] = {}   # pipeline -> (until, root pipeline, root team)
        self.changes: list[Change] = []
        # Enrichment the adapter provides (e.g. the failing task of a run, looked up in the store).
        self.enrich: Callable[[Alert], None] = lambda a: None

    def take_changes(self) -> list[Change]:
        out, self.changes = self.changes, []
        return out

    # --- signals ------------------------------------------------------------------------------------------
    def on_signal(self, sig: Signal, now: float) -> None:
        kind = AlertKind(sig.kind.value)
        metric = sig.key.split(":", 1)[1] if kind in METRIC_KINDS else ""
        fp = fingerprint(sig.pipeline, kind, metric)
        a = self.open.get(fp)
        if sig.type is SignalType.CLOSED:
            if a is not None:
                a.conditions.discard(sig.key)
                if not any(k.split(":", 1)[0] == a.kind for k in a.conditions):  # its own conditions cleared
                    self._resolve(a, now, "condition cleared")
            else:
                self._unjoin(sig, now)
            return
        if a is None:
            host = self.open.get(fingerprint(sig.pipeline, FAILURE))
            why = self._explained(host, sig)
            if host is not None and why is not None:
                self._join(host, sig, why, now)
                return
            a = self._new(fp, sig, kind, metric, now)
            self.open[fp] = a
            a.conditions.add(sig.key)
            self._attach(a, now)
            self.changes.append(Change(a, "opened"))
            if kind in ROOT_KINDS and a.root_cause is None:
                self._notify_downstream(a, now)
            return
        a.conditions.add(sig.key)
        a.occurrences += 1
        a.last_seen = now
        a.description = sig.text
        a.summary = _summary(sig.pipeline, kind, sig.text)
        a.score = max(a.score, sig.score)
        if sig.run_id:
            a.run_id = sig.run_id
        if sig.due is not None:
            a.overdue_since = sig.due
        self._rate(a, now)
        self.enrich(a)
        self.changes.append(Change(a, "updated"))

    # --- one page per root cause -------------------------------------------------------------------------
    def _explained(self, failure: Alert | None, sig: Signal) -> str | None:
        if failure is None:
            return None
        h = self.ev.health.get(sig.pipeline)
        started = h.running.get(sig.run_id) if h is not None and sig.run_id else None
        since = h.incidents[-1][0] if h is not None and h.consecutive_failures and h.incidents else None
        return explains(failure, sig.kind.value, started, since)

    def _join(self, host: Alert, sig: Signal, why: str, now: float) -> None:
        """The condition becomes evidence on the open failure alert (opened or happened again)."""
        host.conditions.add(sig.key)
        e = next((e for e in host.evidence if e["key"] == sig.key), None)
        if e is None:
            host.evidence.append({"kind": sig.kind.value, "key": sig.key, "why": why, "since": now,
                                  "last_seen": now, "count": 1, "text": sig.text, "run_id": sig.run_id,
                                  "cleared_at": None})
        else:
            e.update(last_seen=now, count=e["count"] + 1, text=sig.text, run_id=sig.run_id or e["run_id"],
                     cleared_at=None)
        host.last_seen = now
        self.changes.append(Change(host, "updated"))

    def _unjoin(self, sig: Signal, now: float) -> None:
        """A joined condition cleared: its evidence stays on the alert, marked cleared."""
        host = self.open.get(fingerprint(sig.pipeline, FAILURE))
        if host is None or sig.key not in host.conditions:
            return
        host.conditions.discard(sig.key)
        for e in host.evidence:
            if e["key"] == sig.key:
                e["cleared_at"] = now
        self.changes.append(Change(host, "updated"))

    def _release(self, pipeline: str, keys: set[str], now: float) -> None:
        """The failure resolved: what it explained and is still open becomes an alert of its own."""
        h = self.ev.health.get(pipeline)
        for key in sorted(keys):
            c = h.conditions.get(key) if h is not None else None
            if c is not None:
                self.on_signal(Signal(pipeline, c.kind, key, SignalType.OPENED, now, c.text, c.score,
                                      c.run_id, due=c.due), now)

    def _new(self, fp: str, sig: Signal, kind: AlertKind, metric: str, now: float) -> Alert:
        info = self.info(sig.pipeline)
        labels = {**info.tags, "team": info.team, "namespace": info.namespace, "pipeline": sig.pipeline,
                  "kind": kind.value, "tier": str(info.tier) if info.tier else ""}
        if metric:
            labels["metric"] = metric
        a = Alert(fingerprint=fp, pipeline=sig.pipeline, team=info.team, kind=kind, labels=labels,
                  severity=Severity.WARNING, summary=_summary(sig.pipeline, kind, sig.text),
                  description=sig.text, started_at=now, last_seen=now, run_id=sig.run_id, score=sig.score,
                  page_after=info.page_after_failures, overdue_since=sig.due)
        if kind is AlertKind.FAILURE:
            a.error = self.ev.health[sig.pipeline].last_error if sig.pipeline in self.ev.health else None
        hold = self.holdoff.get(sig.pipeline)
        if hold is not None and kind in ATTACHABLE and now < hold[0]:
            a.held_until, a.root_pipeline, a.root_team = hold
        self._rate(a, now)
        self.enrich(a)
        return a

    def _rate(self, a: Alert, now: float) -> None:
        down = self.lineage.descendants(a.pipeline) if a.kind in ROOT_KINDS else {}
        teams = {self.info(p).team for p in down} - {a.team}
        sev, why = severity(a.kind, Impact(tier=self.info(a.pipeline).tier, score=a.score,
                                           downstream_pipelines=len(down), downstream_teams=len(teams),
                                           age_s=now - a.started_at),
                            self.settings.alerting.warning_escalates_after)
        a.severity_why = why
        if sev is not a.severity:
            a.severity = sev
            a.labels["severity"] = sev.value
            return
        a.labels["severity"] = sev.value

    # --- dependency-aware suppression --------------------------------------------------------------------
    def _root_for(self, pipeline: str) -> Alert | None:
        """The nearest upstream alert that can explain this pipeline's trouble, followed to its root."""
        best: tuple[int, Alert] | None = None
        for up, depth in self.lineage.ancestors(pipeline).items():
            for kind in ROOT_KINDS:
                a = self._known(fingerprint(up, kind))
                if a is not None and (best is None or depth < best[0]):
                    best = (depth, a)
        if best is None:
            return None
        root = best[1]
        while root.root_cause is not None and (up_root := self._known(root.root_cause)) is not None:
            root = up_root
        return root

    def _known(self, fp: str) -> Alert | None:
        return self.open.get(fp) or self.foreign.get(fp)

    def mirror_foreign(self, alerts: dict[str, Alert], now: float) -> None:
        """Another writer's open root-kind alerts, as just read from the store. What is attached here to a
        root open nowhere any more (resolved by its writer) resolves, as that root's own resolve does in one
        writer: also after a restart, when the mirror starts empty."""
        self.foreign = alerts
        gone = {a.root_cause: a for a in self.open.values()
                if a.root_cause is not None and self._known(a.root_cause) is None}
        for fp, a in gone.items():
            self._root_resolved(fp, a.root_pipeline or "", a.root_team or "", now)

    def _attach(self, a: Alert, now: float) -> None:
        if a.kind not in ATTACHABLE:
            return
        root = self._root_for(a.pipeline)
        if root is not None:
            a.root_cause, a.root_pipeline, a.root_team = root.fingerprint, root.pipeline, root.team
            a.held_until = None

    def _notify_downstream(self, root: Alert, now: float) -> None:
        """One upstream_failure notice per other team owning pipelines downstream of the root cause."""
        down = self.lineage.descendants(root.pipeline)
        by_team: dict[str, list[str]] = {}
        for p in down:
            by_team.setdefault(self.info(p).team, []).append(p)
        for team, pipes in sorted(by_team.items()):
            if team == root.team:
                continue
            fp = fingerprint(root.pipeline, UPSTREAM_FAILURE, team)
            if fp in self.open:
                continue
            pipes.sort()
            shown = ", ".join(pipes[:10]) + (f" and {len(pipes) - 10} more" if len(pipes) > 10 else "")
            # Another team reads this: the upstream's name, owner and state, never its error text or log
            # (pipemon.visibility: a neighbour's level).
            what = "is failing" if root.kind == AlertKind.FAILURE else "is late"
            notice = Alert(
                fingerprint=fp, pipeline=root.pipeline, team=team, kind=UPSTREAM_FAILURE,
                labels={"team": team, "namespace": self.info(root.pipeline).namespace,
                        "pipeline": root.pipeline, "kind": UPSTREAM_FAILURE.value,
                        "severity": Severity.INFO.value,
                        "root_team": root.team},
                severity=Severity.INFO,
                summary=(f"upstream {root.pipeline} (team {root.team}) {what}: "
                         f"{len(pipes)} of your pipelines depend on it"),
                description=(f"{root.pipeline}, owned by team {root.team}, {what} "
                             f"(since {at(root.started_at)}). "
                             f"Your pipelines downstream of it: {shown}. They may run late or with partial "
                             f"data; team {root.team} has been paged and you will not be paged for their "
                             "lateness while it is broken."),
                started_at=now, last_seen=now, root_cause=None, root_pipeline=root.pipeline,
                root_team=root.team, conditions={f"root:{root.fingerprint}"})
            notice.severity_why = ["upstream_failure is info"]
            self.open[fp] = notice
            self.changes.append(Change(notice, "opened"))

    def _resolve(self, a: Alert, now: float, why: str) -> None:
        a.state = AlertState.RESOLVED
        a.resolved_at = now
        a.resolved_by = why
        a.last_seen = now
        del self.open[a.fingerprint]
        self.changes.append(Change(a, "resolved"))
        joined = {k for k in a.conditions if k.split(":", 1)[0] != a.kind} if a.kind == FAILURE else set()
        if joined:  # a resolved failure explains nothing any more
            a.conditions -= joined
            for e in a.evidence:  # the same record whichever of the closings the engine sent first
                if e["key"] in joined and e["cleared_at"] is None:
                    e["cleared_at"] = now
            self._release(a.pipeline, joined, now)
        if a.kind in ROOT_KINDS and a.root_cause is None:
            self._root_resolved(a.fingerprint, a.pipeline, a.team, now)

    def _root_resolved(self, fp: str, pipeline: str, team: str, now: float) -> None:
        for other in [o for o in self.open.values() if o.root_cause == fp
                      or (o.kind == UPSTREAM_FAILURE and f"root:{fp}" in o.conditions)]:
            self._resolve(other, now, f"upstream {pipeline} recovered")
        for p in self.lineage.descendants(pipeline):
            self.holdoff[p] = (now + self._fresh_grace(p), pipeline, team)

    def _fresh_grace(self, pipeline: str) -> float:
        """Its usual run duration plus its schedule's grace: time to get the upstream's new data through."""
        h = self.ev.health.get(pipeline)
        usual = sorted(h.durations)[len(h.durations) // 2] if h is not None and h.durations else 0.0
        sched = self.ev.detect.schedule(pipeline)
        grace = sched.grace() if sched is not None else 3600.0
        return usual + grace

    # --- the clock ------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Holds that ended, and severity that grows with age."""
        for p, (until, root_p, root_t) in list(self.holdoff.items()):
            if now < until:
                continue
            del self.holdoff[p]
            h = self.ev.health.get(p)
            if h is None:
                continue
            for key, c in h.conditions.items():  # still late after its fresh grace: now it pages
                if c.kind.value in ATTACHABLE:
                    metric = key.split(":", 1)[1] if c.kind.value in METRIC_KINDS else ""
                    fp = fingerprint(p, c.kind.value, metric)
                    a = self.open.get(fp)
                    host = self.open.get(fingerprint(p, FAILURE))
                    if a is None and host is not None and key in host.conditions:
                        continue  # joined the open failure as evidence: nothing to un-hold
                    if a is None:
                        self.on_signal(Signal(p, c.kind, key, SignalType.OPENED, now, c.text, c.score,
                                              c.run_id, due=c.due), now)
                    elif a.held_until is not None:
                        a.held_until = None
                        self.changes.append(Change(a, "updated"))
        for a in self.open.values():
            if (a.severity is Severity.WARNING
                    and now - a.started_at >= self.settings.alerting.warning_escalates_after):
                self._rate(a, now)
                self.changes.append(Change(a, "updated"))

    # --- operators -----------------------------------------------------------------------------------------
    def acknowledge(self, fp: str, by: str, now: float) -> Alert:
        a = self.open[fp]
        if a.state is AlertState.FIRING:
            a.state = AlertState.ACKNOWLEDGED
            a.acked_at, a.acked_by = now, by
            self.changes.append(Change(a, "acknowledged"))
        return a

    def resolve(self, fp: str, by: str, now: float) -> Alert:
        a = self.open[fp]
        self._resolve(a, now, f"resolved by {by}")
        return a

    def open_alert(self, fp: str, a: Alert) -> None:
        """Restore an open alert from the store (start-up)."""
        self.open[fp] = a


def _summary(pipeline: str, kind: str, text: str) -> str:
    what = {"failure": "failed", "late": "is late", "sla_miss": "missed its SLA",
            "running_long": "is running long", "duration_anomaly": "unusual duration",
            "volume_anomaly": "unusual volume", "failure_rate": "failure burst",
            "schema_change": "schema changed", "extra_run": "unexpected extra run",
            }.get(kind, kind)
    text = " ".join(text.split())
    if kind == AlertKind.FAILURE:  # the headline is what broke; the run id is the alert's run_id
        text = _RUN_PREFIX.sub("", text, count=1)
    return f"{pipeline} {what}: {text[:200]}" if text else f"{pipeline} {what}"


_RUN_PREFIX = re.compile(r"^run \S+ (?:failed|aborted): ")

