"""A pipeline's health: one state with a reason a person can read, and the metrics behind it.

The state is derived, never stored as truth: `assess()` computes it from what `PipelineHealth` has
accumulated (runs, open conditions raised by the detectors) and the time. Precedence, first match wins:

    failing       the last finished run failed or was aborted (N consecutive failures in the reason)
    running_long  a run is still running past its declared max_duration or its learned duration
    late          an expected run has not succeeded by its deadline (declared or learned schedule)
    degraded      succeeding, but with an open anomaly, a failure-rate burst, or an SLA miss in 24 h
    unknown       no finished run yet
    healthy       none of the above

A silence or a maintenance window mutes notifications, never the state: a failing pipeline under a silence
is still `failing`, with `muted` (why, and until when) beside it, so nobody mistakes silenced for healthy.

Reasons carry absolute times ("at 2026-11-26 02:14 UTC"), never "5m ago": a stored reason stays true,
and it changes only when something happened (a healthy one carries none: the metrics say when). A late
pipeline's reason names its first unserved slot; how late that slot is now is computed at read time
from the stored slot (`reason_now`, with the view's `overdue_since`), so it is current whenever read.
Metrics are kept current as runs finish, in bounded windows (the last 20 runs, 100 durations, 168
hourly buckets, 30 days of incidents and SLA days), so a read never scans history.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pipemon.model import Run, RunStatus

HOUR = 3600.0
DAY = 86400.0
RECENT_RUNS = 20
DURATION_WINDOW = 100
VOLUME_WINDOW = 20
HOURLY_WINDOW_H = 7 * 24
INCIDENT_WINDOW = 30 * DAY
DEGRADED_WINDOW = DAY


class HealthState(enum.StrEnum):
    FAILING = "failing"
    RUNNING_LONG = "running_long"
    LATE = "late"
    DEGRADED = "degraded"
    UNKNOWN = "unknown"
    HEALTHY = "healthy"

    @property
    def rank(self) -> int:
        """Worst first, for sorting tables."""
        return _RANK[self]


_RANK = {s: i for i, s in enumerate([HealthState.FAILING, HealthState.RUNNING_LONG, HealthState.LATE,
                                     HealthState.DEGRADED, HealthState.UNKNOWN, HealthState.HEALTHY])}


_STATE_VALUES = frozenset(s.value for s in HealthState)


class ConditionKind(enum.StrEnum):
    """Conditions open on a pipeline, and what closes them. They are what alerts are made of: the
    values are the alert kinds."""

    FAILURE = "failure"                    # the last run failed; closed by the next (non-backfill) success
    LATE = "late"                          # closed by the next (non-backfill) success
    SLA_MISS = "sla_miss"                  # closed by a success, and expires after a day
    RUNNING_LONG = "running_long"          # closed when that run ends
    DURATION_ANOMALY = "duration_anomaly"  # closed by the next finished run without a finding on the metric
    VOLUME_ANOMALY = "volume_anomaly"      # likewise (rows, bytes)
    FAILURE_RATE = "failure_rate"          # closed by the next success
    EXTRA_RUN = "extra_run"                # more runs than the schedule has slots; closed by the next run
    SCHEMA_CHANGE = "schema_change"        # a notice: closed by the next run, never degrades health


RUN_SCOPED = frozenset({ConditionKind.DURATION_ANOMALY,
                        ConditionKind.VOLUME_ANOMALY})  # closed by a normal run
NOTICES = frozenset({ConditionKind.SLA_MISS, ConditionKind.EXTRA_RUN, ConditionKind.SCHEMA_CHANGE})  # age out
DEGRADING = frozenset({ConditionKind.DURATION_ANOMALY, ConditionKind.VOLUME_ANOMALY,
                       ConditionKind.FAILURE_RATE, ConditionKind.SLA_MISS, ConditionKind.EXTRA_RUN})


@dataclass
class Condition:
    kind: ConditionKind
    key: str          # what it is about: a metric, a run id, a day
    since: float
    text: str
    score: float = 0.0
    run_id: str | None = None
    due: float | None = None   # late: the first unserved slot (how late it is now is computed when read)

    def to_json(self) -> list:
        v = [self.kind.value, self.key, self.since, self.text, self.score, self.run_id]
        return v if self.due is None else [*v, self.due]

    @staticmethod
    def from_json(v: list) -> Condition:
        return Condition(ConditionKind(v[0]), v[1], v[2], v[3], v[4], v[5], v[6] if len(v) > 6 else None)


@dataclass
class PipelineHealth:
    """Everything health needs about one pipeline, in bounded space, JSON round-trippable."""

    first_seen: float
    runs_total: int = 0
    last_run: dict[str, Any] | None = None           # the latest top-level run, as the API shows it
    last_finished_status: str | None = None
    last_finished_at: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    recent: str = ""                                 # last 20 finished runs: "s" / "f"
    hourly: dict[int, list[int]] = field(default_factory=dict)   # hour -> [succeeded, failed]
    durations: list[float] = field(default_factory=list)          # last 100 successful durations
    rows: list[float] = field(default_factory=list)               # last 20 successful rows
    bytes: list[float] = field(default_factory=list)
    throughput: list[float] = field(default_factory=list)         # rows/s of the last 20 successes
    incidents: list[list[float | None]] = field(default_factory=list)  # [first failure, recovery] over 30 d
    sla_days: dict[int, bool] = field(default_factory=dict)       # day -> met, over 30 d
    running: dict[str, float] = field(default_factory=dict)       # open top-level runs -> start
    conditions: dict[str, Condition] = field(default_factory=dict)
    muted: str | None = None                                      # why, when silenced / in maintenance
    muted_until: float | None = None                              # when that silence or window ends
    state: HealthState = HealthState.UNKNOWN
    reason: str = "no finished run yet"
    state_since: float = 0.0

    # --- recording ------------------------------------------------------------------------------------
    def run_started(self, run: Run) -> None:
        self.running[run.run_id] = run.started_at
        self._remember(run)

    def run_updated(self, run: Run) -> None:
        self._remember(run)
        c = self.conditions.get(f"{ConditionKind.FAILURE.value}:status")
        if c is not None and c.run_id == run.run_id and run.status is not RunStatus.SUCCEEDED:
            c.text = _failure_text(run, int(c.score))  # what broke became known after the run ended
            self.last_error = run.failure_text

    def run_finished(self, run: Run, backfill: bool) -> None:
        """Count a finished top-level run. A backfill (a rerun of an old date) counts in the statistics
        but neither ends a failure streak nor clears lateness: today's run is still owed."""
        self.running.pop(run.run_id, None)
        self._close(ConditionKind.RUNNING_LONG, run.run_id)
        self._remember(run)
        end = run.ended_at if run.ended_at is not None else run.started_at
        ok = run.status is RunStatus.SUCCEEDED
        self.runs_total += 1
        self.recent = (self.recent + ("s" if ok else "f"))[-RECENT_RUNS:]
        hour = int(end // HOUR)
        bucket = self.hourly.setdefault(hour, [0, 0])
        bucket[0 if ok else 1] += 1
        if len(self.hourly) > HOURLY_WINDOW_H:
            for h in [h for h in self.hourly if h <= hour - HOURLY_WINDOW_H]:
                del self.hourly[h]
        if ok:
            if run.duration is not None:
                _push(self.durations, run.duration, DURATION_WINDOW)
            if run.rows is not None:
                _push(self.rows, run.rows, VOLUME_WINDOW)
                if run.duration:
                    _push(self.throughput, run.rows / run.duration, VOLUME_WINDOW)
            if run.bytes is not None:
                _push(self.bytes, run.bytes, VOLUME_WINDOW)
            if backfill:
                return
            self.last_success = max(self.last_success or 0.0, end)
            self.last_finished_status, self.last_finished_at = run.status.value, end
            if self.consecutive_failures:
                self.consecutive_failures = 0
                if self.incidents and self.incidents[-1][1] is None:
                    self.incidents[-1][1] = end
            for kind in (ConditionKind.FAILURE, ConditionKind.LATE, ConditionKind.FAILURE_RATE,
                         ConditionKind.SLA_MISS):
                self._close(kind)
        else:
            self.last_failure = max(self.last_failure or 0.0, end)
            self.last_error = run.failure_text
            self.last_finished_status, self.last_finished_at = run.status.value, end
            if self.consecutive_failures == 0:
                self.incidents.append([end, None])
            self.consecutive_failures += 1
            n = self.consecutive_failures
            self.open(ConditionKind.FAILURE, "status", end, _failure_text(run, n), score=float(n),
                      run_id=run.run_id)
        self.incidents = [i for i in self.incidents if i[1] is None or i[1] > end - INCIDENT_WINDOW]

    def _remember(self, run: Run) -> None:
        last = self.last_run
        if last is None or run.started_at >= last["started_at"] or last["run_id"] == run.run_id:
            self.last_run = {"run_id": run.run_id, "status": run.status.value, "started_at": run.started_at,
                             "ended_at": run.ended_at, "duration": run.duration, "rows": run.rows,
                             "error": run.failure_text}

    def open(self, kind: ConditionKind, key: str, since: float, text: str, score: float = 0.0,
             run_id: str | None = None, due: float | None = None) -> str:
        """Open a condition (a repeat only refreshes its text, score, run and due slot); returns its key."""
        k = f"{kind.value}:{key}"
        cur = self.conditions.get(k)
        if cur is not None:
            cur.text, cur.score, cur.run_id = text, max(cur.score, score), run_id or cur.run_id
            cur.due = due if due is not None else cur.due
            return k
        self.conditions[k] = Condition(kind, key, since, text, score, run_id, due)
        return k

    def overdue_since(self) -> float | None:
        """While the state is late: the first unserved slot its reason names (readers add how late it is)."""
        if self.state is not HealthState.LATE:
            return None
        return next((c.due for c in self.conditions.values() if c.kind is ConditionKind.LATE), None)

    def _close(self, kind: ConditionKind, key: str | None = None) -> None:
        for k in [k for k, c in self.conditions.items() if c.kind is kind and (key is None or c.key == key)]:
            del self.conditions[k]

    def close_anomalies_not_in(self, keys: set[str]) -> None:
        """A finished run without a finding on a metric closes that metric's open anomaly."""
        for k in [k for k, c in self.conditions.items() if c.kind in RUN_SCOPED and k not in keys]:
            del self.conditions[k]

    def record_sla(self, day: int, met: bool) -> None:
        self.sla_days[day] = met
        for d in [d for d in self.sla_days if d <= day - 30]:
            del self.sla_days[d]

    def expiring(self, now: float) -> bool:
        """Whether a notice is due to age out (see expire)."""
        return any(c.kind in NOTICES and c.since < now - DEGRADED_WINDOW for c in self.conditions.values())

    def expire(self, now: float) -> None:
        """Notices age out: an SLA miss, an extra run or a schema change speaks for a day."""
        for k in [k for k, c in self.conditions.items()
                  if c.kind in NOTICES and c.since < now - DEGRADED_WINDOW]:
            del self.conditions[k]

    # --- judging ----------------------------------------------------------------------------------------
    def assess(self, now: float) -> tuple[HealthState, str]:
        """The state and its reason, by the precedence in the module docstring."""
        conds = list(self.conditions.values())
        if any(c.kind is ConditionKind.FAILURE for c in conds):
            n = self.consecutive_failures
            err = f": {_short(self.last_error)}" if self.last_error else ""
            streak = f" ({n} consecutive failures)" if n > 1 else ""
            return HealthState.FAILING, (f"last run {self.last_finished_status} at "
                                         f"{at(self.last_finished_at)}{err}{streak}")
        long = [c for c in conds if c.kind is ConditionKind.RUNNING_LONG]
        if long:
            return HealthState.RUNNING_LONG, f"run {long[0].run_id} {long[0].text}"
        late = [c for c in conds if c.kind is ConditionKind.LATE]
        if late:
            since = f"; last success {at(self.last_success)}" if self.last_success else "; never succeeded"
            return HealthState.LATE, late[0].text + since
        bad = [c for c in conds if c.kind in DEGRADING]
        if bad:
            worst = max(bad, key=lambda c: c.score)
            more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
            return HealthState.DEGRADED, worst.text + more
        if self.last_finished_status is None:
            return HealthState.UNKNOWN, "first run still running" if self.running else "no finished run yet"
        # no time here: a healthy reason that changed with every run would rewrite the view every run
        return HealthState.HEALTHY, "last run succeeded"

    def metrics(self, now: float) -> dict[str, Any]:
        """The numbers the API, CLI and dashboard show."""
        r24 = self._rate(now, DAY)
        r7d = self._rate(now, 7 * DAY)
        recent = self.recent
        ds = sorted(self.durations)
        closed = [(b - a) for a, b in self.incidents if b is not None and a is not None]
        starts = [a for a, _ in self.incidents if a is not None and a > now - INCIDENT_WINDOW]
        sla = list(self.sla_days.values())
        return {
            "runs_total": self.runs_total,
            "success_rate_24h": r24,
            "success_rate_7d": r7d,
            "success_rate_last_20": recent.count("s") / len(recent) if recent else None,
            "consecutive_failures": self.consecutive_failures,
            "duration_last_s": (self.last_run or {}).get("duration"),
            "duration_p50_s": _pct(ds, 0.50),
            "duration_p95_s": _pct(ds, 0.95),
            "duration_p99_s": _pct(ds, 0.99),
            "rows_last": (self.last_run or {}).get("rows"),
            "rows_typical": _median(self.rows),
            "bytes_last": self.bytes[-1] if self.bytes else None,
            "bytes_typical": _median(self.bytes),
            "throughput_rows_per_s": _median(self.throughput),
            "last_success_at": self.last_success,
            "freshness_s": (now - self.last_success) if self.last_success else None,
            "last_failure_at": self.last_failure,
            "sla_compliance_30d": (sum(sla) / len(sla)) if sla else None,
            "mttr_30d_s": (sum(closed) / len(closed)) if closed else None,
            "mtbf_30d_s": (self._uptime(now) / len(starts)) if starts else None,
            "running": len(self.running),
        }

    def _uptime(self, now: float) -> float:
        """Seconds not spent failing over the last 30 days (or since first seen): MTBF's numerator."""
        since = max(now - INCIDENT_WINDOW, self.first_seen)
        down = sum(min(b if b is not None else now, now) - max(a, since) for a, b in self.incidents
                   if a is not None and (b is None or b > since))
        return max(0.0, now - since - down)

    def _rate(self, now: float, window: float) -> float | None:
        lo = int((now - window) // HOUR)
        ok = bad = 0
        for h, (s, f) in self.hourly.items():
            if h > lo:
                ok += s
                bad += f
        return ok / (ok + bad) if ok + bad else None

    # --- JSON ---------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in _PLAIN}
        d["hourly"] = {str(h): v for h, v in self.hourly.items()}
        d["sla_days"] = {str(k): v for k, v in self.sla_days.items()}
        d["conditions"] = {k: c.to_json() for k, c in self.conditions.items()}
        d["state"] = self.state.value
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> PipelineHealth:
        h = PipelineHealth(first_seen=d["first_seen"])
        for k in _PLAIN:
            if k in d:
                setattr(h, k, d[k])
        h.hourly = {int(k): v for k, v in d.get("hourly", {}).items()}
        h.sla_days = {int(k): v for k, v in d.get("sla_days", {}).items()}
        h.conditions = {k: Condition.from_json(v) for k, v in d.get("conditions", {}).items()}
        # a state this version no longer has (`paused`, before silences stopped replacing the state) reads as
        # unknown until the next change re-assesses it (AlertStage.refresh_paused does at the first tick)
        st = d.get("state", "unknown")
        h.state = HealthState(st) if st in _STATE_VALUES else HealthState.UNKNOWN
        return h


_PLAIN = ("first_seen", "runs_total", "last_run", "last_finished_status", "last_finished_at", "last_success",
          "last_failure", "last_error", "consecutive_failures", "recent", "durations", "rows", "bytes",
          "throughput", "incidents", "running", "muted", "muted_until", "reason", "state_since")


def _push(xs: list[float], x: float, cap: int) -> None:
    xs.append(float(x))
    if len(xs) > cap:
        del xs[0]


def _pct(sorted_xs: list[float], q: float) -> float | None:
    if not sorted_xs:
        return None
    k = min(len(sorted_xs) - 1, max(0, math.ceil(q * len(sorted_xs)) - 1))  # nearest rank
    return sorted_xs[k]


def _median(xs: list[float]) -> float | None:
    return _pct(sorted(xs), 0.5) if xs else None


def _failure_text(run: Run, n: int) -> str:
    """`run R failed: transform failed: ValueError: …` (what broke, else its own error) and the streak."""
    err = f": {_short(run.failure_text)}" if run.failure_text else ""
    return f"run {run.run_id} {run.status.value}{err}" + (f" ({n} consecutive failures)" if n > 1 else "")


def _short(text: str | None, n: int = 120) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


def reason_now(reason: str, overdue_since: float | None, now: float) -> str:
    """A stored reason as of a read: a late pipeline's reason leads with how late its first unserved slot is
    now (computed here, so the figure never freezes at the moment the state changed)."""
    if overdue_since is None:
        return reason
    return f"{late_by(now - overdue_since)} late: {reason}"


def late_by(seconds: float) -> str:
    return span(max(seconds, 0.0))


def at(t: float | None) -> str:
    """An absolute time for reasons: stable text, so a reason changes only when something happened."""
    if t is None:
        return "never"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def span(seconds: float) -> str:
    s = abs(seconds)
    if s < 90:
        return f"{s:.0f}s"
    if s < 90 * 60:
        return f"{s / 60:.0f}m"
    if s < 36 * 3600:
        h, m = divmod(int(s // 60), 60)
        return f"{h}h{m:02d}m" if m else f"{h}h"
    return f"{s / 86400:.1f}d"
