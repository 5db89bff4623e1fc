"""Late, missing and extra runs against the declared or learned schedule, raised by the clock.

Each run start is matched to a slot: the latest slot at or before `start + early tolerance` (10 %
of an interval, so a run may start a little early but a very late run is still the late run, not
an early next one). A slot is watched until its deadline (slot + grace); if no run has started by
then, `on_due` raises LATE (or MISSING when the previous slot went unserved too) exactly once for
that slot. A late run that arrives afterwards just fulfils its slot: no second finding. A pipeline
that stays silent is reported at about 1, 2, 4, 8 ... missed runs in a row, and watched at the
same doubling pace, so a dead pipeline costs nothing per slot. A finding's text holds absolute times
only (the first unserved slot); its `observed` value is how late that slot is at the finding's time, and
readers recompute the figure when they read it (`overdue_since`).
Slots are judged against the newest run known, whenever it becomes known: a start whose slot is newer than
the last served one moves the watch back to it, so history that arrives late (an import, events sent long
after they happened) makes a declared pipeline late at once for the slots after its last run, instead
of only from the next slot on.
A start whose slot already had its run is an EXTRA_RUN (once per slot; a retry after a failure is
not one, nor the slot's own run after an early start that followed a slot without its run: that early
start was the late run of the slot before). While a run is in flight, slots pass silently: the
running-long detector speaks then. The suite asks `overlaps`: a scheduler seen lately starting a
slot's run beside a running one does not wait for runs, and there a run in flight excuses missed slots
only while it is not a suspect itself (`_holds_schedule`).

Schedules move (a deploy shifts a daily job by hours): when 3 starts in a row sit off-slot by about
the same offset, the schedule is re-phased by that offset instead of alarming on forever. A start
within the grace but far past the usual lag counts as off-slot too (a small move learned as start lag
would inflate the lag's deviation, and the grace with it, for months). Nothing tells a move later than
the grace from a late run at the first deadline: that one is LATE; after it, the next slot's run is
owed that much later, so a move costs one LATE, not one a slot until the re-phase. A declared
"every N seconds" takes its phase from its first run.
A pipeline that names a holiday calendar and skipped its recent holiday slots is not late on the next
one (the first skipped holiday is reported: a pipeline may run on holidays); one that ran on them is.
Without a declared schedule one is learned (engine.schedule.ScheduleLearner): nothing is raised
until it is. It is re-learned weekly (and at least 32 starts apart), and at once after a move, when
off-slot starts show no consistent move, or when the weekday mask changes.
"""
from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Final

from pipemon.engine.detect import explain
from pipemon.engine.detect.base import ALARM_SCORE, Direction, Finding, FindingKind
from pipemon.engine.schedule import (
    GRACE_K,
    GRACE_MIN_S,
    LAG_WARM,
    Calendar,
    Schedule,
    ScheduleLearner,
    ScheduleSource,
)

_SHIFT_RUNS: Final = 3
_RELEARN_EVERY: Final = 32  # starts, and ...
# ... time, between routine re-learns (a move or trouble re-learns at once)
_RELEARN_AFTER_S: Final = 7 * 86400.0
_LEARN_TRY_EVERY: Final = 8  # starts between attempts while nothing is learned yet
_WALK: Final = 8  # at most this many due slots are counted one by one; more are estimated from the interval
_MOVE_DEVS: Final = GRACE_K / 3  # a start this many lag deviations past the usual lag is no jitter
_HOL_MEMORY: Final = 2  # holiday slots: how far the served / skipped tally goes either way
# runs seen overlapping this recently: the scheduler does not wait for a run
_OVERLAP_MEMORY_S: Final = 7 * 86400.0
_OVERLAP_MEMORY_SLOTS: Final = 8  # ... or this many intervals, if longer
DAY: Final = 86400.0


class CadenceDetector:
    __slots__ = (
        "_watch",
        "_watch_dl",
        "_watch_ok",
        "_watch_sens",
        "covered",
        "dows",
        "early_claim",
        "extra_slot",
        "fulfilled",
        "hol",
        "holidays",
        "last_failed",
        "last_start",
        "learned_at",
        "learner",
        "miss_from",
        "misses",
        "overlap_at",
        "rephase_next",
        "schedule",
        "shift_buf",
        "since_learn",
        "sleep_until",
    )

    def __init__(self, schedule: Schedule | None = None) -> None:
        self.schedule = schedule
        self.learner = ScheduleLearner() if schedule is None else None
        self.fulfilled: float | None = None  # the latest slot that got its run
        self.covered: float | None = None  # the latest slot dealt with (served, alarmed or skipped)
        self.misses = 0  # consecutive unserved slots
        self.miss_from = 0.0
        self.extra_slot: float | None = None
        # a slot claimed by an early start while the slot before it had no run: that start may have been the
        # earlier slot's run, very late; a second start for this slot is then its own run, not an extra one
        self.early_claim: float | None = None
        self.shift_buf: list[float] = []
        self.last_start: float | None = None
        self.last_failed = False
        self.since_learn = 0
        self.learned_at = -math.inf
        self.dows = 0  # the learner's weekday mask when the schedule was last learned
        self.rephase_next = False  # operator said EXPECTED: the next start sets the phase
        self.sleep_until = 0.0  # a silent pipeline is looked at again only then
        self._watch_ok = False  # cache: the slot after `covered` (None: there is none) and its deadline
        self._watch: float | None = None
        self._watch_dl: float | None = None
        self._watch_sens = 0.0
        self.holidays: frozenset[int] = frozenset()  # the calendar's days (not state: from the spec)
        self.hol = 0  # holiday slots lately served (> 0) or passed without a run (< 0), within +-_HOL_MEMORY
        self.overlap_at: float | None = None  # the latest slot's start that found an earlier run in flight

    def _cover(self, slot: float | None) -> None:
        self.covered = slot
        self._watch_ok = False

    # ------------------------------------------------------------------------------- run starts
    def on_start(self, pipeline_id: str, run_id: str | None, t: float,
                 nominal: float | None = None, in_flight: bool = False) -> Finding | None:
        """A run started at t; `nominal` is the slot its scheduler says it is for, when it says (an Airflow
        run's logical date is its interval's start, an interval before it runs: the same grid).
        `in_flight`: an earlier run of the pipeline was still going."""
        self.last_start = t
        if self.learner is not None:
            self._learn(t if nominal is None else nominal, nominal is not None)
        sch = self.schedule
        if sch is None:
            return None
        if self.rephase_next or (self.fulfilled is None and self.covered is None and sch.calendar.every_s > 0
                                 and sch.source is ScheduleSource.DECLARED and sch.offset_s == 0):
            # EXPECTED feedback asked for it, or a declared "every N s" meets its first run: its phase
            self.rephase_next = False
            sch.shift(self._offset(sch, t))
            self.fulfilled = None
            self._cover(None)
        early = t + sch.early_s
        cov, watch = self.covered, self._watch
        # the common cases need no calendar walk: the run is for the watched slot, or the covered one
        if self._watch_ok and watch is not None and watch <= early < watch + sch.calendar.min_gap:
            slot: float | None = watch
        elif self._watch_ok and cov is not None and cov <= early and (watch is None or watch > early):
            slot = cov
        else:
            slot = sch.prev_expected(early)
        if slot is None:
            return None
        if self.fulfilled is not None and slot <= self.fulfilled and not self.last_failed:
            # the slot had its run: a start nearer the next slot than this one is that slot's run,
            # early (a schedule moved earlier by more than the early tolerance), not an extra run
            nxt = sch.next_expected(slot)
            if nxt is not None and nxt - t < t - slot:
                slot = nxt
        if self.fulfilled is None or slot > self.fulfilled:
            lag = t - slot
            before = self.fulfilled
            self.early_claim = (slot if lag < 0 and before is not None
                                and (sch.prev_expected(slot - 1.0) or before) > before else None)
            self.fulfilled = slot
            if in_flight:  # a scheduled start beside a running run (not a retry, not an extra run)
                self.overlap_at = t
            if self.holidays and int(slot // DAY) in self.holidays and self.hol < _HOL_MEMORY:
                self.hol += 1
            # the slots after the newest run known are judged from it: history learned late (an import,
            # events sent long after they happened) re-opens what was only assumed or judged without it
            self._cover(slot)
            self.misses = 0
            self.sleep_until = 0.0
            self.last_failed = False
            if 0.0 <= lag + sch.early_s and lag <= sch.grace() and not self._late_within(sch, lag):
                sch.observe_lag(lag)
                self._watch_ok = False  # the grace moved
                if self.shift_buf:
                    self.shift_buf.clear()
            else:
                self._maybe_moved(t)
            return None
        if self.last_failed:  # a retry of the slot's failed run
            self.last_failed = False
            return None
        if self.early_claim == slot:  # the early start was the slot before's run, late; this is the slot's
            self.early_claim = None
            return None
        if self._maybe_moved(t) or self.extra_slot == slot:
            return None
        self.extra_slot = slot
        nxt = sch.next_expected(slot)
        return Finding(
            pipeline_id, FindingKind.EXTRA_RUN, "schedule", t, run_id, t, slot, None, nxt, ALARM_SCORE,
            Direction.HIGH,
            f"extra run at {explain.clock(t)}: the {explain.clock(slot)} run already started "
            f"({sch.describe()}); next expected {explain.clock(nxt) if nxt else 'never'}")

    def overlaps(self, now: float) -> bool:
        """Whether the scheduler lately started runs while others were going: then a run in flight does
        not excuse a slot without its start. Pure."""
        at, sch = self.overlap_at, self.schedule
        if at is None or sch is None:
            return False
        return now - at < max(_OVERLAP_MEMORY_S, _OVERLAP_MEMORY_SLOTS * sch.interval_s)

    def on_finish(self, failed: bool) -> None:
        self.last_failed = failed

    def watch_from(self, now: float) -> None:
        """Start watching a declared calendar before any run: the first slot after `now` is owed. (An
        "every N s" without a run has no phase yet; a learned schedule does not exist yet.)"""
        sch = self.schedule
        if sch is not None and self.covered is None and not sch.calendar.every_s:
            self._cover(sch.prev_expected(now) or now)

    @staticmethod
    def _offset(sch: Schedule, t: float) -> float:
        """t relative to its nearest slot, early (< 0) or late (> 0)."""
        a, b = sch.prev_expected(t), sch.next_expected(t)
        if a is None or b is None:
            return 0.0
        return t - a if t - a <= b - t else t - b

    @staticmethod
    def _late_within(sch: Schedule, lag: float) -> bool:
        """A start within the grace but clearly later than the learned jitter (and than a minute): counted
        towards a move, not learned as jitter. Absorbed into the lag, a move would either leave little
        grace above it (the cap is half an interval): LATE whenever a start is a little later than usual;
        or, smaller than the least grace (10 % of an interval), inflate the lag's deviation and the grace
        (25 of them) up to that cap, hiding late runs for months. Also true of the jitter's far tail
        (8 deviations: about 1 start in 1,000), which then only waits for a start on time."""
        return (lag > GRACE_MIN_S and sch.lag_n >= LAG_WARM
                and lag > sch.lag_loc + _MOVE_DEVS * sch.lag_dev)

    def _maybe_moved(self, t: float) -> bool:
        """Off-slot starts: after _SHIFT_RUNS of them at about the same offset, re-phase."""
        sch = self.schedule
        assert sch is not None
        buf = self.shift_buf
        buf.append(self._offset(sch, t))
        self._watch_ok = False  # the next deadline waits for a start that late (see `due`)
        if len(buf) > _SHIFT_RUNS:
            del buf[0]
        if len(buf) < _SHIFT_RUNS:
            return False
        if max(buf) - min(buf) > max(0.1 * sch.interval_s, 2 * sch.grace()):
            # off-slot starts that are no move: the calendar itself may be wrong, re-learn at once
            self.since_learn, self.learned_at = _RELEARN_EVERY, -math.inf
            return False
        sch.shift(sorted(buf)[len(buf) // 2])
        buf.clear()
        self.fulfilled = sch.prev_expected(t + sch.early_tolerance())
        self._cover(self.fulfilled)
        self.misses = 0
        self.extra_slot = None
        if self.learner is not None:  # learn the new times from the starts after the move only
            del self.learner.starts[:-_SHIFT_RUNS]
        return True

    def _learn(self, t: float, nominal: bool = False) -> None:
        """Learn the calendar from start times, or from nominal times: those sit exactly on the grid."""
        lr = self.learner
        assert lr is not None
        new_day = lr.observe(t)
        self.since_learn += 1
        if self.schedule is None:
            due = self.since_learn >= _LEARN_TRY_EVERY
        else:
            due = (self.since_learn >= _RELEARN_EVERY and t - self.learned_at >= _RELEARN_AFTER_S) or (
                new_day and lr.active_dows() != self.dows)
        if not due:
            return
        self.since_learn, self.learned_at = 0, t
        self.dows = lr.active_dows()
        cal = lr.infer()
        old = self.schedule
        if cal is None or (old is not None and not old.offset_s
                           and _same(old.calendar, cal, old.early_tolerance())):
            return
        if not lr.explains(cal):
            return
        source = ScheduleSource.NOMINAL if nominal else ScheduleSource.LEARNED
        new = Schedule(cal, source, cal.typical_interval(t))
        if old is not None:
            new.lag_loc, new.lag_dev, new.lag_n = old.lag_loc, old.lag_dev, old.lag_n
        self.schedule = new
        self.fulfilled = None  # this start anchors the new calendar
        self._cover(None)
        self.shift_buf.clear()

    # ----------------------------------------------------------------------------- the clock
    def due(self, sensitivity: float) -> float | None:
        """When the next unserved slot becomes late (for the suite's timer heap). Cached."""
        sch = self.schedule
        if sch is None or self.covered is None:
            return None
        if not self._watch_ok or self._watch_sens != sensitivity:
            watch = self._watch = sch.next_expected(self.covered)
            self._watch_dl = None if watch is None else sch.deadline(watch, sensitivity)
            buf = self.shift_buf
            if buf and self._watch_dl is not None and min(buf) > 0.0:
                # the last starts came later than their slots, by about the same: perhaps the schedule
                # moved later. The next run is owed only that much later (one LATE for a move, not one
                # a slot until the re-phase); a start on the old time clears it
                self._watch_dl += min(buf)
            self._watch_ok, self._watch_sens = True, sensitivity
        dl = self._watch_dl
        return dl if dl is None or dl >= self.sleep_until else self.sleep_until

    def on_due(self, pipeline_id: str, now: float, sensitivity: float, running: bool) -> list[Finding]:
        """Every slot whose deadline passed by `now` without a run: one LATE / MISSING finding when the
        count of missed runs in a row reaches 1, 2, 4, 8 ..."""
        sch = self.schedule
        dl = self.due(sensitivity)
        if sch is None or dl is None or dl > now:
            return []
        first = self._watch
        assert first is not None
        if self.holidays and int(first // DAY) in self.holidays and not running:
            # a holiday slot without a run: excused once the pipeline has skipped its recent holidays (the
            # first one skipped is still reported: a pipeline that names a calendar may run on holidays)
            skips = self.hol < 0
            if self.hol > -_HOL_MEMORY:
                self.hol -= 1
            if skips:
                self._cover(first)
                return []
        last, n = first, 1  # the last due slot, and how many are due
        while n <= _WALK:
            nxt = sch.next_expected(last)
            if nxt is None or sch.deadline(nxt, sensitivity) > now:
                break
            last, n = nxt, n + 1
        else:  # many due: the clock jumped or the pipeline is long dead; estimate the rest
            tail = sch.prev_expected(now - sch.grace(sensitivity))
            if tail is not None and tail > last:
                n += round((tail - last) / sch.interval_s)
                last = tail
        self._cover(last)
        if running:
            return []
        before = self.misses
        if before == 0:
            self.miss_from = first
        self.misses = before + n
        if self.misses >= 2:  # silent for a while: look again when the silence has doubled
            self.sleep_until = now + (now - self.miss_from)
        if before and before.bit_length() == self.misses.bit_length():
            return []  # no new power of two reached
        return [self._missed(pipeline_id, last, now, sensitivity)]

    def _missed(self, pipeline_id: str, slot: float, now: float, sensitivity: float) -> Finding:
        sch = self.schedule
        assert sch is not None
        score = max(ALARM_SCORE * sch.lateness_score(now - self.miss_from) / GRACE_K,
                    ALARM_SCORE / sensitivity)
        # Absolute times only: the text is stored (health reason, alert) and must stay true. How late it is
        # now is `observed` (seconds past the first unserved slot at `now`): readers recompute it when read.
        usual = (f"; usually starts {explain.duration(max(sch.lag_loc, 0.0))} after the slot"
                 if sch.lag_n else "")
        first = self.miss_from
        if self.misses == 1:
            kind = FindingKind.LATE
            text = f"no run yet for the {slot_name(slot)} slot ({sch.describe()}){usual}"
        else:
            kind = FindingKind.MISSING
            text = (f"{self.misses} expected runs missed in a row since the {slot_name(first)} slot "
                    f"({sch.describe()})")
        return Finding(pipeline_id, kind, "schedule", now, None, now - first, sch.lag_loc, None,
                       sch.grace(sensitivity), score, Direction.HIGH, text)

    # -------------------------------------------------------------------------------- feedback
    def accept_current(self) -> None:
        """EXPECTED: the run times seen lately are the new normal. A declared schedule moves to the
        last off-slot start at once (or to the next start); a learned one is re-learned from the
        coming starts."""
        self.misses, self.sleep_until = 0, 0.0
        self._watch_ok = False
        sch, buf = self.schedule, self.shift_buf
        if self.learner is not None:
            self.schedule = None
            del self.learner.starts[:]
            self.since_learn = 0
        elif sch is not None and buf and self.last_start is not None:
            sch.shift(buf[-1])  # the last start is on its slot now
            self.fulfilled = sch.prev_expected(self.last_start + sch.early_tolerance())
            self._cover(self.fulfilled)
        else:
            self.rephase_next = True
        buf.clear()

    # ------------------------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ful": self.fulfilled, "cov": self.covered, "last": self.last_start}
        if self.schedule is not None:
            d["sch"] = self.schedule.to_json()
        if self.learner is not None:
            d["learner"] = self.learner.to_json()
            d["since"], d["dows"] = self.since_learn, self.dows
            d["learned_at"] = self.learned_at if math.isfinite(self.learned_at) else None
        if self.misses:
            d["miss"] = [self.misses, self.miss_from, self.sleep_until]
        if self.extra_slot is not None:
            d["extra"] = self.extra_slot
        if self.early_claim is not None:
            d["early"] = self.early_claim
        if self.shift_buf:
            d["shift"] = self.shift_buf
        if self.last_failed:
            d["failed"] = True
        if self.rephase_next:
            d["rephase"] = True
        if self.hol:
            d["hol"] = self.hol
        if self.overlap_at is not None:
            d["ovl"] = self.overlap_at
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> CadenceDetector:
        c = CadenceDetector(Schedule.from_json(d["sch"]) if "sch" in d else None)
        if "learner" in d:
            c.learner = ScheduleLearner.from_json(d["learner"])
            c.since_learn, c.dows = d["since"], d["dows"]
            c.learned_at = -math.inf if d["learned_at"] is None else d["learned_at"]
        else:
            c.learner = None
        c.fulfilled, c.covered, c.last_start = d["ful"], d["cov"], d["last"]
        c.misses, c.miss_from, c.sleep_until = d.get("miss", [0, 0.0, 0.0])
        c.extra_slot = d.get("extra")
        c.early_claim = d.get("early")
        c.shift_buf = list(d.get("shift", []))
        c.last_failed = bool(d.get("failed", False))
        c.rephase_next = bool(d.get("rephase", False))
        c.hol = int(d.get("hol", 0))
        c.overlap_at = d.get("ovl")
        return c


def slot_name(t: float) -> str:
    """A slot, unambiguous beyond a week: 'Tue 2026-11-03 02:00 UTC'."""
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%a %Y-%m-%d %H:%M UTC")


def overdue_since(f: Finding) -> float | None:
    """The first unserved slot of a LATE or MISSING finding."""
    if f.kind not in (FindingKind.LATE, FindingKind.MISSING) or f.observed is None:
        return None
    return f.time - f.observed


def _same(a: Calendar, b: Calendar, tol: float) -> bool:
    """The same calendar up to a phase wobble smaller than tol (re-learning must not churn)."""
    if (a.dows, a.doms, a.every_s > 0, len(a.times)) != (b.dows, b.doms, b.every_s > 0, len(b.times)):
        return False
    if a.every_s:
        return abs(a.every_s - b.every_s) < 1e-6 * a.every_s and abs((a.anchor - b.anchor) % a.every_s) < tol
    return all(abs(x - y) < tol for x, y in zip(a.times, b.times))
