"""One page per root cause (issue 10, item 5), in pure code: the rule (`explains`), and the engine from runs to
what would be sent (Judge -> AlertBook -> Dispatch, fixed clock, no I/O)."""
from __future__ import annotations

import pytest

from pipemon.config import loads
from pipemon.engine.alerts import Alert, AlertBook, PipelineInfo, explains, fingerprint
from pipemon.engine.dispatch import Dispatch
from pipemon.engine.judge import Judge, Signal, SignalType
from pipemon.engine.health import ConditionKind
from pipemon.engine.lineage import Lineage
from pipemon.engine.mute import Muter
from pipemon.model import AlertState, NotifyAction, Run, RunStatus, Severity

T0 = 1_790_000_000.0 // 86400 * 86400  # a midnight
H = 3600.0


def _failure(state=AlertState.FIRING, started=100.0) -> Alert:
    return Alert(fingerprint("p", "failure"), "p", "t", "failure", {}, Severity.ERROR, "s", "d", started, started,
                 state=state)


@pytest.mark.parametrize("failure, kind, run_started, failing_since, joins", [
    (_failure(), "failure_rate", None, None, True),                  # the burst is made of the same failures
    (_failure(), "late", None, None, True),                          # the slots a failing pipeline leaves unserved
    (_failure(), "running_long", 150.0, 120.0, True),                # a retry: started after the first failure
    (_failure(), "running_long", 120.0, 120.0, True),                # ... at the same moment counts
    (_failure(), "running_long", 90.0, 120.0, False),                # already going before the failure: its own
    (_failure(started=100.0), "running_long", 110.0, None, True),    # no streak known: the alert's start
    (_failure(), "running_long", None, 120.0, False),                # a run we cannot place is not explained
    (_failure(), "duration_anomaly", None, None, False),             # other kinds keep their own alerts
    (_failure(), "sla_miss", None, None, True),                      # no success since the failure: missed
    (_failure(), "schema_change", None, None, False),
    (_failure(AlertState.ACKNOWLEDGED), "failure_rate", None, None, True),  # acknowledged is still open
    (_failure(AlertState.RESOLVED), "failure_rate", None, None, False),     # a resolved failure explains nothing
    (None, "failure_rate", None, None, False),
])
def test_explains(failure, kind, run_started, failing_since, joins):
    assert (explains(failure, kind, run_started, failing_since) is not None) is joins


def test_only_a_failure_alert_explains():
    late = Alert(fingerprint("p", "late"), "p", "t", "late", {}, Severity.ERROR, "s", "d", 0.0, 0.0)
    assert explains(late, "failure_rate") is None


CFG = """
receivers: [{name: oncall}, {name: boss}]
escalation_policies:
  - name: up
    steps: [{after: 30m, receiver: boss}]
route:
  receiver: oncall
  group_by: [team, pipeline]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  escalation: up
pipelines:
  - {match: "core/*", team: core, tier: 1, schedule: "0 * * * *", grace: 15m, max_duration: 20m}
  - {match: "held/*", team: core, schedule: "0 * * * *", grace: 15m, max_duration: 20m, page_after_failures: 3}
"""


class World:
    """The pure engine end to end: runs in, what would be sent out."""

    def __init__(self, cfg: str = CFG) -> None:
        self.settings = loads(cfg)
        self.ev = Judge(self.settings)
        self.book = AlertBook(self.settings, self.ev, Lineage(), self.info)
        self.d = Dispatch(self.settings, Muter())
        self.resolved: dict[str, Alert] = {}
        self.sent: list[tuple[str, NotifyAction, tuple[str, ...], float]] = []
        self.now = T0

    def info(self, pipeline: str) -> PipelineInfo:
        rule = self.settings.rule_for(pipeline)
        assert rule is not None
        return PipelineInfo(team=rule.team or "x", tier=rule.tier, tags={}, namespace="core",
                            page_after_failures=rule.page_after_failures)

    def lookup(self, fp: str) -> Alert | None:
        return self.book.open.get(fp) or self.resolved.get(fp)

    def _process(self, signals: list[Signal], now: float) -> None:
        for s in signals:
            self.book.on_signal(s, now)
        for ch in self.book.take_changes():
            if ch.what == "resolved":
                self.resolved[ch.alert.fingerprint] = ch.alert
            elif ch.alert.open:
                self.d.place(ch.alert, now)
        self.tick(now, engine=False)

    def tick(self, now: float, engine: bool = True) -> None:
        if engine:
            out = self.ev.on_tick(now)
            self._process(out.signals, now) if out.signals else None
        if self.d.due(now):
            for o in self.d.flush(now, self.lookup, lambda: list(self.book.open.values())):
                self.sent.append((o.receiver, o.action, o.fingerprints, o.time))

    def advance(self, to: float) -> None:
        """Tick every minute up to `to` (timers fire on the way)."""
        while self.now < to:
            self.now = min(to, self.now + 60)
            self.tick(self.now)

    def run(self, p: str, rid: str, start: float, end: float, ok: bool = True) -> None:
        self.advance(start)
        begin = Run(p, rid, RunStatus.RUNNING, start, start_seen=True)
        self._process(self.ev.on_run(p, T0, None, begin, start).signals, start)
        self.advance(end)
        done = Run(p, rid, RunStatus.SUCCEEDED if ok else RunStatus.FAILED, start, end, start_seen=True,
                   error_message=None if ok else "boom")
        self._process(self.ev.on_run(p, T0, begin, done, end).signals, end)

    def pages(self, receiver: str = "oncall") -> list[tuple[NotifyAction, tuple[str, ...]]]:
        return [(a, fps) for r, a, fps, _ in self.sent if r == receiver and a is not NotifyAction.RESOLVE]


def _history(w: World, p: str, hours: int) -> float:
    t = T0
    for i in range(hours):
        w.run(p, f"ok{i}", t + 60, t + 300)
        t += H
    return t


def test_failing_three_times_pages_once_and_the_burst_is_evidence_on_the_failure():
    w = World()
    t = _history(w, "core/a", 72)
    for i in range(3):
        w.run("core/a", f"bad{i}", t + 60, t + 300, ok=False)
        t += H
    fp = fingerprint("core/a", "failure")
    assert w.pages() == [(NotifyAction.TRIGGER, (fp,))]
    a = w.book.open[fp]
    assert [e["kind"] for e in a.evidence] == ["failure_rate"] and a.occurrences == 3
    assert "Also explained by this failure" in a.view().description and "failed runs in a row" in a.view().description
    assert set(w.book.open) == {fp}  # no failure_rate alert of its own
    w.run("core/a", "fixed", t + 60, t + 300)  # a success clears the failure and the burst together
    w.advance(t + 900)
    assert fp not in w.book.open and not w.book.open
    assert [a for _, a, fps, _ in w.sent if fps == (fp,)][-1] is NotifyAction.RESOLVE


def test_a_retry_running_long_joins_the_failure_and_resolves_with_it():
    w = World()
    t = _history(w, "core/a", 3)
    w.run("core/a", "bad", t + 60, t + 300, ok=False)
    w.run("core/a", "retry", t + 600, t + 600 + 3 * 1800, ok=False)  # runs past max_duration (20m), fails again
    fp = fingerprint("core/a", "failure")
    assert w.pages() == [(NotifyAction.TRIGGER, (fp,))]
    ev = w.book.open[fp].evidence
    assert [(e["kind"], e["run_id"], e["cleared_at"] is not None) for e in ev] == [("running_long", "retry", True)]


def test_a_run_already_running_long_before_the_failure_keeps_its_own_alert():
    w = World()
    t = _history(w, "core/a", 3)
    w.run("core/a", "slow", t + 60, t + 3000)      # running long (past 20m): its own alert, paged
    assert [k for _, k in w.pages()] == [(fingerprint("core/a", "running_long"),)]


def test_a_failure_held_by_page_after_failures_pages_when_a_retry_runs_long():
    w = World()
    t = _history(w, "held/a", 3)
    w.run("held/a", "bad", t + 60, t + 300, ok=False)  # 1 of 3 failures: held
    w.advance(t + 600)
    assert w.pages() == []
    w.run("held/a", "retry", t + 600, t + 600 + 3 * 1800)  # the retry hangs past max_duration: the failure pages
    fp = fingerprint("held/a", "failure")
    assert (NotifyAction.TRIGGER, (fp,)) in w.pages() and len(w.pages()) == 1


def test_escalation_still_pages_the_next_step_for_the_open_failure():
    w = World()
    t = _history(w, "core/a", 72)
    for i in range(2):
        w.run("core/a", f"bad{i}", t + 60, t + 300, ok=False)
        t += H
    w.advance(t + H)
    fp = fingerprint("core/a", "failure")
    assert w.pages("boss") == [(NotifyAction.ESCALATE, (fp,))]
    assert w.pages("oncall") == [(NotifyAction.TRIGGER, (fp,))]


def test_what_the_failure_explained_becomes_its_own_alert_when_it_resolves_first():
    w = World()
    t = _history(w, "core/a", 3)
    w.run("core/a", "bad", t + 60, t + 300, ok=False)
    fp = fingerprint("core/a", "failure")
    # a late of the failing pipeline joins it ...
    w.book.on_signal(Signal("core/a", ConditionKind.LATE, "late:schedule", SignalType.OPENED, t + 400, "no run"),
                     t + 400)
    assert [e["kind"] for e in w.book.open[fp].evidence] == ["late"]
    w.ev.health["core/a"].open(ConditionKind.LATE, "schedule", t + 400, "no run")
    # ... and the failure is resolved by an operator while the lateness goes on: lateness gets its own alert
    w.book.resolve(fp, "alice", t + 500)
    assert fingerprint("core/a", "late") in w.book.open


def test_joined_evidence_round_trips_through_json():
    w = World()
    t = _history(w, "core/a", 72)
    for i in range(2):
        w.run("core/a", f"bad{i}", t + 60, t + 300, ok=False)
        t += H
    a = w.book.open[fingerprint("core/a", "failure")]
    b = Alert.from_json(a.to_json())
    assert b.evidence == a.evidence and b.conditions == a.conditions and b.detail() == a.detail()


@pytest.mark.parametrize("occurrences, page_after, evidence, held", [
    (1, 3, [], True),
    (3, 3, [], False),
    (1, None, [], False),
    (2, 3, ["failure_rate"], True),     # a burst counts the same failures: page_after decides
    (1, 3, ["running_long"], False),    # a retry hanging: more than a blip, page now
    (1, 3, ["late"], False),
    (1, 3, ["sla_miss"], False),
])
def test_a_held_failure_pages_early_on_evidence_that_it_is_more_than_a_blip(occurrences, page_after, evidence,
                                                                             held):
    a = _failure()
    a.occurrences = occurrences
    a.evidence = [{"kind": k, "key": f"{k}:x", "why": "w", "count": 1, "text": "t"} for k in evidence]
    assert a.below_page_after(page_after) is held
    a.page_after = page_after
    assert (a.held(0.0) is not None) is held
