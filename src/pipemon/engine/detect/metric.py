"""One metric of one pipeline (duration, rows, bytes or a generic value): a robust seasonal baseline.

Model, in log space for counts and durations (so seasonality, trends and shifts are multiplicative):

    y = level + hour_of_day[h] + day_of_week[d] + month_end_or_start[m] + noise

- The hour-of-day profile is used when the pipeline runs several times a day (typical gap < 20 h),
  the day-of-week profile when it runs at least every few days (gap < 3.5 d): weekends, Monday
  catch-up. Weekday-only pipelines simply never fill their weekend buckets.
- Learning is streaming Holt-Winters with robust twists: runs beyond half the alarm line are not
  learned (they are suspects: flagged, or on their way to a level shift, which has its own rule),
  and gains start at 1/n (a mean) and settle at memories of 4 weeks for the weekday profile, 14 days
  for the hour profile and the level, 30 runs for the noise scale (a mean absolute one-step error).
  The weekday profile learns first: a slower level must not soak up every weekend.
- Score: z = (y - expected) / scale, alarm at base.ALARM_SCORE (4) / sensitivity. The scale is
  TAIL (2.8) mean absolute errors, so the default alarm line is ~11 of them (~9 sigma if the noise
  were Gaussian): run metrics are heavy-tailed (Student-t-like, 4-5 degrees of freedom, on the
  benchmark), and that is where such noise has its 1-in-10,000 tail. It is never less than the
  95th percentile of |error| (flagged runs included): the mean absolute error ignores outliers by
  design, which is wrong when they are routine (intermittent series, mostly zeros with frequent
  spikes); a rare anomaly cannot move a 95th percentile, routine spikes set it. For Gaussian or
  t4 noise that percentile stays below the first term.
- Cold start: nothing is scored before MIN_RUNS runs, MIN_SCALE one-step errors from a model whose
  buckets were ready, and MIN_BUCKET runs in this run's seasonal buckets.
- Sustained deviations: along a streak of same-side runs beyond SHIFT_Z (half the alarm line) a
  run scores the larger of its own |z| and the streak's combined |sum z| / sqrt(k) (Stouffer), so
  three runs at 0.6x are flagged though none is alone; for t4-like noise such a streak of three
  has odds ~1e-8.
- Level shifts: SHIFT_RUNS (4) consecutive runs beyond SHIFT_Z on the same
  side re-baseline the level by their median, so a new normal is absorbed within ~a day of runs
  (an anomaly, 1-3 runs, is not). For a few runs after a shift the previous level still counts as
  normal, so a long outage that was absorbed and then recovers is not flagged a second time.
- Special days (calendar.py) get their own offset, learned from every run on those days (they come
  once a month, so flagged ones count too, clipped) and used once clearly not noise: the month's
  first day, and three month-end kinds (its last day when a business day, the last business day
  when the month ends on a weekend or holiday, and that last day), so peaks on the last business
  day and on the last calendar day are both learned. Until a month-end kind has been seen for a
  day, a peak there up to MONTH_END_SLACK is normal: a pipeline's first month-end is not a page, and
  it is learned as far as that (not clipped at the band edge), so the second is not one either.
- Public holidays (when the pipeline names a calendar) are their own case: the expectation is a
  drop to HOLIDAY_PRIOR (0.3x) before any holiday is seen, then the learned holiday offset; a run
  is normal anywhere from the lower of the two (widened by HOLIDAY_SLACK: ~0.18x) to the usual
  level. Holiday runs teach only the holiday offset: the level, profiles and scale are for
  ordinary days.
- A duration coupled to its run's rows (coupling.py; the suite couples "duration_s" to "rows") is judged
  against them at completion when it is longer than they explain: the volume's noise, holidays and
  shifts are the rows'; a volume level shift moves the duration with it (`follow`).
- An exact zero of a log metric is its own regime: "0 rows on success" is flagged while zeros
  are rare (< 5 % of runs) and learned as normal when they are common.
- Findings come per episode: after one, the same metric stays quiet in the same direction until
  COOLDOWN (6) runs in a row are not flagged, unless it gets clearly worse (ESCALATE: 4x the
  reported score, as 0.4x rows then 0 rows). A deviation lasting several runs is one finding.
"""
from __future__ import annotations

import math
from typing import Any, Final

from pipemon.engine.detect.base import ALARM_SCORE
from pipemon.engine.detect.calendar import (
    HOLIDAY,
    KINDS,
    LAST_BUSINESS,
    LAST_DAY,
    MONTH_END,
    MONTH_START,
    NO_CALENDAR,
    Calendar,
)
from pipemon.engine.detect.coupling import Coupling

DAY: Final = 86400.0
HOD_BELOW_S: Final = 20 * 3600.0
DOW_BELOW_S: Final = 3.5 * DAY
MONTH_BELOW_S: Final = 7 * DAY
MIN_RUNS: Final = 10
MIN_SCALE: Final = 6
MIN_BUCKET: Final = 2
TAIL: Final = 2.8
Q_TAIL: Final = 0.9
Q_GAIN: Final = 0.05
SHIFT_RUNS: Final = 4
SHIFT_Z: Final = ALARM_SCORE / 2
REVERT_RUNS: Final = 3 * SHIFT_RUNS
LEVEL_DAYS: Final = 14.0  # level memory, in days of runs (capped at LEVEL_MAX runs)
LEVEL_MAX: Final = 1000.0
HOD_MEMORY: Final = 14.0  # days
DOW_MEMORY: Final = 4.0  # weeks
SLOPE_MEMORY: Final = 3.0  # level memories
SLOPE_AHEAD_S: Final = 7 * DAY
MONTH_MEMORY: Final = 6.0  # special days (of each kind)
SCALE_MEMORY: Final = 30.0  # runs
COOLDOWN: Final = 6
ESCALATE: Final = 4.0
ZERO_RATE_MAX: Final = 0.05
_ZERO_GAIN: Final = 0.02
_RECENTER_EVERY: Final = 64
HOLIDAY_PRIOR: Final = math.log(0.3)  # what a holiday does to volume before the pipeline's own is learned
HOLIDAY_SLACK: Final = 0.5  # log-space margin below the expected holiday level (x0.6) that is still normal
HOLIDAY_MEMORY: Final = 3.0  # holidays' worth of runs
MONTH_END_SLACK: Final = math.log(3.5)  # a first month-end peak up to this is normal (peaks are 1.5-3x)

# (signed z, expected value in model space, scale, (hour, weekday, month) buckets; -1 = unused)
Scored = tuple[float, float, float, tuple[int, int, int]]
# (expected y, hour, weekday and month buckets, mature, scale)
Expect = tuple[float, int, int, int, bool, float]


class MetricBaseline:
    __slots__ = (
        "accept_next",
        "boot",
        "cal",
        "dev",
        "dev_n",
        "dow",
        "dow_n",
        "ep_quiet",
        "ep_score",
        "episode",
        "gap",
        "given",
        "hod",
        "hod_n",
        "hold",
        "last_t",
        "jump",
        "level",
        "level_t",
        "log",
        "mon",
        "mon_n",
        "n",
        "prev_left",
        "prev_level",
        "q95",
        "slope",
        "streak",
        "version",
        "zeros",
    )

    def __init__(self, log: bool = True) -> None:
        self.log = log
        self.n = 0
        self.level = 0.0
        self.hod = [0.0] * 24
        self.hod_n = [0] * 24
        self.dow = [0.0] * 7
        self.dow_n = [0] * 7
        self.cal: Calendar = NO_CALENDAR  # the pipeline's, shared; not state (it comes with the spec)
        self.mon = [0.0] * KINDS  # special days (calendar.py kinds): used once significant
        self.mon_n = [0] * KINDS
        self.dev = 0.0  # EW mean absolute one-step-ahead error (model space)
        self.dev_n = 0
        self.q95 = 0.0  # EW 95th percentile of |one-step error|, flagged runs included
        self.slope = 0.0  # the level's drift per second (Holt), learned once the level is warm
        self.level_t = 0.0  # when the level was last learned: it is projected from there
        self.boot: list[float] = []  # the first MIN_SCALE |errors|: their median starts `dev`
        self.gap = 0.0  # EW typical seconds between runs (0 = unknown)
        self.last_t: float | None = None
        self.streak: list[float] = []  # residuals of consecutive same-side deviations
        self.prev_level = 0.0
        self.prev_left = 0  # runs for which prev_level still counts as normal
        self.hold = False  # operator said INCIDENT: no re-baselining until the metric is back
        self.accept_next = False  # operator said EXPECTED with no deviation in hand: adopt the next run
        self.episode = 0  # +1 / -1: a finding high / low was reported, and ...
        self.ep_score = 0.0  # ... its score, and the unflagged runs since (the episode ends at COOLDOWN)
        self.ep_quiet = 0
        self.zeros = 0.0  # EW share of exact zeros (log metrics)
        self.version = 0  # bumped by every learn: a cached expectation is valid while it stands
        self.given: Coupling | None = None  # a duration's coupling to its run's rows (coupling.py)
        self.jump = 0.0  # how far the last learn moved the level at once (a shift or its revert); not state

    # ------------------------------------------------------------------------------- the model
    def inv(self, y: float) -> float:
        return math.expm1(700.0 if y > 700.0 else y) if self.log else y

    def band_at(self, mu: float, s: float, z: float) -> tuple[float, float, float]:
        """(lower, expected, upper) in the metric's units for a model-space expectation and scale."""
        lo = self.inv(mu - z * s)
        return (lo if lo > 0.0 or not self.log else 0.0), self.inv(mu), self.inv(mu + z * s)

    def _month_used(self, mb: int, s: float) -> bool:
        """A special day's effect counts once its mean is clearly not noise (|m| >= s/sqrt n); a holiday's
        always does (from its prior)."""
        n = self.mon_n[mb]
        return mb == HOLIDAY or (n > 0 and self.mon[mb] * self.mon[mb] * n >= s * s)

    def _month_offset(self, mb: int, s: float) -> float:
        """A month-end or month-start kind's offset once significant; a month-end kind not yet seen for a
        day borrows: a peak on the month's last day when a business day is the peak of the last business
        day, or of the last calendar day, whichever the pipeline has shown; a last business day before a
        weekend month-end borrows the peak of a month's last day that was a business day."""
        if self._month_used(mb, s):
            return self.mon[mb]
        if mb == MONTH_END and self.mon_n[mb] * self.gap < DAY:
            for k in (LAST_BUSINESS, LAST_DAY):
                if self._month_used(k, s):
                    return self.mon[k]
        elif mb == LAST_BUSINESS and self.mon_n[mb] * self.gap < DAY and self._month_used(MONTH_END, s):
            return self.mon[MONTH_END]  # (and the other way round: both are the month's last business day)
        return 0.0

    def _month_end_unseen(self) -> bool:
        """No month-end kind seen for a day yet: a first month-end peak is not an anomaly."""
        n = self.mon_n
        return (n[MONTH_END] + n[LAST_BUSINESS] + n[LAST_DAY]) * self.gap < DAY

    def _holiday(self) -> float:
        return self.mon[HOLIDAY] if self.mon_n[HOLIDAY] else self._holiday_prior()

    def _holiday_prior(self) -> float:
        """A holiday's drop before the pipeline's own is learned: the volume's, and for a duration coupled
        to its rows that drop to the power it follows them (a job at 0.3x rows is not 0.3x as long)."""
        c = self.given
        return HOLIDAY_PRIOR * c.beta() if c is not None and c.ready() else HOLIDAY_PRIOR

    def residual(self, e: Expect, x: float) -> float:
        """An observation's distance from its expectation (model space). Pure."""
        return (math.log1p(x) if self.log else x) - e[0]

    def _special_seen(self, mb: int) -> bool:
        """This special day's own effect has been learned (a holiday, or a month-end for a day)."""
        return self.mon_n[HOLIDAY] > 0 if mb == HOLIDAY else mb == MONTH_START or not self._month_end_unseen()

    def expect(self, t: float) -> Expect:
        """The model's expectation at local time t, reusable by `update` while `version` stands. Pure.

        (expected y, hour, weekday, month buckets, mature: enough runs overall and in the buckets,
        scale). A mature model with a known scale (dev_n >= MIN_SCALE) can judge a run."""
        # the scale: TAIL mean absolute errors, at least Q_TAIL 95th percentiles, and a small floor
        # (max() spelled out: this runs twice per run, the builtin call costs more than the compares)
        s = TAIL * self.dev
        q = Q_TAIL * self.q95
        if q > s:
            s = q
        floor = 0.02 if self.log else 1e-3 * abs(self.level) + 1e-12
        if floor > s:
            s = floor
        gap = self.gap
        mu = self.level
        if self.slope:  # a steady trend: project the level (at most a week ahead)
            dt = t - self.level_t
            mu += self.slope * (dt if dt < SLOPE_AHEAD_S else SLOPE_AHEAD_S)
        warm = self.n >= MIN_RUNS
        hb = db = mb = -1
        if gap:
            day = int(t // DAY)
            if gap < HOD_BELOW_S:
                hb = int((t - day * DAY) // 3600)
                mu += self.hod[hb]
                warm = warm and self.hod_n[hb] >= MIN_BUCKET
            if gap < DOW_BELOW_S:
                db = (day + 3) % 7
                mu += self.dow[db]
                warm = warm and self.dow_n[db] >= MIN_BUCKET
            if gap < MONTH_BELOW_S:
                mb = self.cal.day_kind(day)
                if mb == HOLIDAY:
                    mu += self._holiday()
                elif mb >= 0:
                    mu += self._month_offset(mb, s)
        return mu, hb, db, mb, warm, s

    # ----------------------------------------------------------------------------------- scoring
    def score(self, t: float, x: float) -> Scored | None:
        """The observation's z and expectation, or None while cold. Pure.

        `t` is local time (unix seconds shifted by the pipeline's UTC offset) for the buckets."""
        return self._score(self.expect(t), x)

    def _score(self, e: Expect, x: float) -> Scored | None:
        mu, hb, db, mb, mature, s = e
        if not mature or self.dev_n < MIN_SCALE:
            return None
        season = (hb, db, mb if mb >= 0 and (mb == HOLIDAY or self._month_offset(mb, s)) else -1)
        if self.accept_next:
            return 0.0, mu, s, season
        if self.log and x <= 0:
            return (0.0 if self.zeros >= ZERO_RATE_MAX else -min(mu / s, 1e3)), mu, s, season
        y = math.log1p(x) if self.log else x
        if mb >= 0 and (mb == HOLIDAY or (mb != MONTH_START and self.log and self._month_end_unseen())):
            return self._special_z(mb, y, mu, s), mu, s, season
        z = (y - mu) / s
        if z < SHIFT_Z and z > -SHIFT_Z:
            return z, mu, s, season
        if self.prev_left:
            z_prev = z + (self.level - self.prev_level) / s
            if -SHIFT_Z < z_prev < SHIFT_Z:  # the level before the last shift: still normal for a while
                return z_prev, mu - self.level + self.prev_level, s, season
        st = self.streak
        if st and (st[0] > 0) == (z > 0):  # a sustained deviation: the streak's combined evidence
            k = len(st) + 1
            comb = (sum(st) / s + z) / math.sqrt(k)
            if (comb > z) if z > 0 else (comb < z):
                z = comb
        return z, mu, s, season

    def _score_given(self, e: Expect, x: float, r_given: float, c: Coupling) -> Scored | None:
        """A duration judged against the rows its run reported (coupling.py): the expectation moved by
        beta times the rows' residual, on the conditional scale; the level before a recent shift still
        counts. A holiday or month-end not yet learned is judged as before, on its own (its interval)."""
        mu, hb, db, mb, mature, s = e
        if not mature or self.dev_n < MIN_SCALE or self.accept_next or x <= 0 or (
                mb >= 0 and not self._special_seen(mb)):
            return self._score(e, x)
        season = (hb, db, mb if mb >= 0 and (mb == HOLIDAY or self._month_offset(mb, s)) else -1)
        mu_c = mu + c.beta() * r_given
        sc = c.scale(0.02)
        z = c.combined(math.log1p(x) - mu_c, sc)
        if self.prev_left and (z >= SHIFT_Z or z <= -SHIFT_Z):
            z_prev = z + (self.level - self.prev_level) / sc
            if -SHIFT_Z < z_prev < SHIFT_Z:
                return z_prev, mu_c - self.level + self.prev_level, sc, season
        return z, mu_c, sc, season

    def _special_z(self, mb: int, y: float, mu: float, s: float) -> float:
        """z on a holiday, or on a first month-end: distance from the interval that is normal there."""
        if mb == HOLIDAY:
            h = self._holiday()
            r = y - mu + h  # against the ordinary day
            # the prior stays a floor: a pipeline whose past holidays were ordinary may still dip on the next
            prior = self._holiday_prior()
            lo, hi = (h if h < prior else prior) - HOLIDAY_SLACK, h if h > 0.0 else 0.0
        else:
            r, lo, hi = y - mu, 0.0, MONTH_END_SLACK
        return (r - lo) / s if r < lo else (r - hi) / s if r > hi else 0.0

    def band(self, t: float, z: float) -> tuple[float, float, float] | None:
        """(lower, expected, upper) in the metric's units at +-z scales, or None while cold. Pure."""
        mu, _, _, _, mature, s = self.expect(t)
        return self.band_at(mu, s, z) if mature and self.dev_n >= MIN_SCALE else None

    def upper_of(self, e: Expect, z: float) -> float | None:
        """The value at +z scales (the running-long line) of an expectation, or None while cold. Pure."""
        mu, _, _, _, mature, s = e
        if not mature or self.dev_n < MIN_SCALE:
            return None
        y = mu + z * s
        return math.expm1(700.0 if y > 700.0 else y) if self.log else y

    def upper(self, t: float, z: float) -> float | None:
        return self.upper_of(self.expect(t), z)

    def z_of(self, t: float, x: float) -> float | None:
        r = self.score(t, x)
        return None if r is None else r[0]

    # ---------------------------------------------------------------------------------- learning
    def reports(self, z: float) -> bool:
        """Whether a flagged z is news: not the episode already reported, unless clearly worse. Pure."""
        return self.episode != (1 if z > 0 else -1) or abs(z) > ESCALATE * self.ep_score

    def update(self, t: float, x: float, line: float, e: Expect | None = None,
               given: float | None = None, given_ordinary: bool = False) -> tuple[Scored | None, bool, bool]:
        """Score, then learn: (score, flagged at |z| >= line, reported). The suite's one call per run;
        `e` is this t's expectation when the caller kept it (see `expect`) and `version` has not moved.
        `given`: the run's rows residual (`residual` of the rows model) when this is a duration coupled
        to them; `given_ordinary`: those rows were no suspect, so the pair may teach the coupling."""
        if e is None:
            e = self.expect(t)
        c = self.given
        res = self._score_given(e, x, given, c) if c is not None and given is not None and c.ready() else None
        if res is None or res[0] < 0.0:  # shorter than its rows explain: judged as before, on its own
            res = self._score(e, x)
        z = res[0] if res is not None else 0.0
        flagged = z >= line or z <= -line
        report = flagged and self.reports(z)
        suspect = False  # longer than the rows explain by half the line: towards a streak, and not learned
        if c is not None and given is not None and c.ready():
            r_c = (math.log1p(x) if x > 0 else 0.0) - e[0] - c.beta() * given
            suspect = x > 0 and r_c >= SHIFT_Z * c.scale(0.02)
            c.track(r_c, suspect)
        if c is not None and given is not None and e[3] < 0 and e[4] and self.dev_n >= MIN_SCALE and x > 0:
            r = self.residual(e, x)
            ordinary = given_ordinary and not flagged and not suspect and -SHIFT_Z * e[5] < r < SHIFT_Z * e[5]
            c.learn(r, given, ordinary)
        self._learn(e, t, x, flagged, z, report)
        return res, flagged, report

    def follow(self, delta: float) -> None:
        """The coupled rows' level jumped by delta (a shift adopted, or reverted): move with them by
        beta * delta now, rather than flag the runs until a shift of our own is absorbed."""
        c = self.given
        if c is None or not c.ready():
            return
        d = c.beta() * delta
        if not d:
            return
        self.version += 1
        if self.prev_left and (self.level - self.prev_level) * d < 0.0:  # the rows reverted: so do we
            self.level, self.prev_left, self.streak = self.prev_level, 0, []
        else:
            self._rebaseline(d)

    def learn(self, t: float, x: float, flagged: bool = False) -> None:
        """Learn one observation (local time t). Flagged observations only count towards a shift."""
        e = self.expect(t)
        res = self._score(e, x) if flagged else None
        z = res[0] if res is not None else 0.0
        self._learn(e, t, x, flagged, z, flagged and self.reports(z))

    def _learn(self, e: Expect, t: float, x: float, flagged: bool, z_seen: float, report: bool) -> None:
        mu, hb, db, mb, mature, s = e
        self.version += 1
        if self.jump:
            self.jump = 0.0
        if report:
            self.episode, self.ep_score, self.ep_quiet = (1 if z_seen > 0 else -1), abs(z_seen), 0
        elif flagged:
            self.ep_quiet = 0
        elif self.episode:
            self.ep_quiet += 1
            if self.ep_quiet >= COOLDOWN:
                self.episode = 0
        last = self.last_t
        if last is None or t > last:
            if last is not None:
                g = t - last
                self.gap = g if not self.gap else self.gap * (g / self.gap) ** 0.1  # EW in log space
            self.last_t = t
        if self.log and x <= 0:
            self.zeros += _ZERO_GAIN * (1.0 - self.zeros)
            return
        if self.zeros:  # (0.0 stays 0.0: leaving it be keeps the shared constant, not a new float per run)
            self.zeros -= _ZERO_GAIN * self.zeros
        r = (math.log1p(x) if self.log else x) - mu
        if mb == HOLIDAY:
            if mature:
                self._learn_holiday(r + self._holiday(), s)
            return
        if self.n == 0:
            self.level, self.n = r + mu, 1
            return
        if self.accept_next:
            self.accept_next = False
            self._rebaseline(r)
            self.prev_left = 0
            return
        scaled = self.dev_n >= MIN_SCALE
        judged = mature and scaled  # else the run says little about the model: learn it in full
        z = r / s if judged else 0.0
        if self.prev_left:
            self.prev_left -= 1
            if abs(z) >= SHIFT_Z and abs(z + (self.level - self.prev_level) / s) < SHIFT_Z:
                # back to the level before the last shift: that shift was an outage, not a new normal
                self.jump = self.prev_level - self.level
                self.level, self.prev_left, self.streak = self.prev_level, 0, []
                return
        if judged:  # stochastic approximation of the 95th percentile, in relative steps, from below
            q, a = self.q95, abs(r)  # (an overestimate would take ~1/(0.05 * Q_GAIN) runs to shrink)
            self.q95 = q + Q_GAIN * q * (0.95 if a > q else -0.05) if q > 0.0 else a / 20.0
        if mb >= 0 and not self.streak and not self.prev_left:
            # (not while a level shift is under way or just made: a shift that starts on a month-end
            # would otherwise be learned as that day's offset, and counted twice the next month)
            self._learn_month(mb, r, s, clip=judged)
        if -SHIFT_Z < z < SHIFT_Z:  # back within half the line: no streak, no incident hold
            if self.streak:
                self.streak = []
            self.hold = False
            if flagged:
                return
        else:  # a suspect: it counts towards a level shift and is not learned
            if mb < 0 or r < 0:  # (a month-end's peak is the day's, not a new level: an hourly one would
                self._track_shift(r)  # otherwise re-baseline the level up and down again within a day)
            return
        c = r  # (|z| < SHIFT_Z here when judged: nothing to clip)
        if mature:
            a = c if c > 0 else -c
            k = self.dev_n = self.dev_n + 1
            if k <= MIN_SCALE:  # the median of the first few, so one early outlier cannot set the scale
                self.boot.append(a)
                self.dev = sorted(self.boot)[len(self.boot) // 2]
                if k == MIN_SCALE:
                    self.boot = []
            else:
                self.dev += (a - self.dev) / (k if k <= SCALE_MEMORY else SCALE_MEMORY)
        n = self.n = self.n + 1
        gap = self.gap
        rpd = DAY / gap if gap else 1.0
        # the weekday profile learns first and fastest per cycle, then the hour profile, then the slow
        # level: otherwise the level and hour buckets soak up every weekend and Monday
        # gains 1 / min(k, memory): a plain mean of the first runs, then an EW average with that memory
        # (min and max spelled out as compares, in the builtins' order: this runs twice per run)
        if db >= 0:
            k = self.dow_n[db] = self.dow_n[db] + 1
            mem = DOW_MEMORY * (rpd if rpd > 1.0 else 1.0)
            g = 1.0 / (k if k <= mem else mem)
            self.dow[db] += g * c
            c -= g * c
        if hb >= 0:
            k = self.hod_n[hb] = self.hod_n[hb] + 1
            per_hour = rpd / 24.0
            mem = HOD_MEMORY * (per_hour if per_hour > 1.0 else 1.0)
            g = 1.0 / (k if k <= mem else mem)
            self.hod[hb] += g * c
            c -= g * c
        mem = LEVEL_DAYS * rpd
        mem = mem if mem >= 8.0 else 8.0
        mem = mem if mem <= LEVEL_MAX else LEVEL_MAX
        g = c / (n if n <= mem else mem)
        lt = self.level_t
        if n > mem and t > lt > 0.0:  # Holt: the projected level moved by g more than the slope said
            dt = t - lt
            dt = dt if dt < SLOPE_AHEAD_S else SLOPE_AHEAD_S
            self.level += self.slope * dt
            self.slope += g / dt / (SLOPE_MEMORY * mem)
        self.level += g
        if t > lt:
            self.level_t = t
        if n % _RECENTER_EVERY == 0:
            self._recenter()

    def _learn_month(self, mb: int, r: float, s: float, clip: bool) -> None:
        """Month-end peaks come once a month: learn them from every run, flagged or not (the error clipped
        at the band edge when judged), or the first month-end would be the only one ever seen. The clip
        is on the error, not the offset: a peak several bands high is reached in a few months."""
        if clip:
            lim = ALARM_SCORE * s
            hi = lim
            if mb != MONTH_START and lim < MONTH_END_SLACK and self._month_end_unseen():
                hi = MONTH_END_SLACK  # a first month-end peak is judged normal up to the slack: learn it so
            r = max(-lim, min(hi, r))
        borrowed = self._month_offset(mb, s)  # as `expect` decided
        full = r + borrowed
        if not self.mon_n[mb]:  # a kind seen the first time starts from what it borrowed, not from 0 (an
            self.mon[mb] = borrowed  # hourly job's 02:00 run would expect half the peak its 01:00 run had)
        k = self.mon_n[mb] = self.mon_n[mb] + 1
        rpd = DAY / self.gap if self.gap else 1.0  # the memory is in days: all of an hourly job's day counts
        mem = MONTH_MEMORY * (rpd if rpd > 1.0 else 1.0)
        if rpd > 1.0:  # a prior of one ordinary run, so one odd run cannot set the day's offset alone
            k += 1  # (a job that runs once a day has no other run to tell it by)
        self.mon[mb] += (full - self.mon[mb]) / (k if k <= mem else mem)

    def _learn_holiday(self, r: float, s: float) -> None:
        """The holiday offset (against the ordinary day), the prior counting as one run; clipped at the
        alarm line, so an anomaly on a holiday moves it little."""
        h = self._holiday()
        lim = ALARM_SCORE * s
        r = h - lim if r < h - lim else h + lim if r > h + lim else r
        k = self.mon_n[HOLIDAY] = self.mon_n[HOLIDAY] + 1
        rpd = DAY / self.gap if self.gap else 1.0
        mem = HOLIDAY_MEMORY * (rpd if rpd > 1.0 else 1.0)
        self.mon[HOLIDAY] = h + (r - h) / ((k + 1) if k + 1 <= mem else mem)

    def _track_shift(self, r: float) -> None:
        """Count a deviation beyond SHIFT_Z; after SHIFT_RUNS on one side adopt their median as the level."""
        st = self.streak
        if st and (st[0] > 0) != (r > 0):
            st.clear()
        st.append(r)
        if len(st) >= SHIFT_RUNS and not self.hold:
            self._rebaseline(sorted(st)[len(st) // 2])

    def _rebaseline(self, delta: float) -> None:
        self.prev_level, self.prev_left = self.level, REVERT_RUNS
        self.level += delta
        self.jump = delta
        if self.given is not None and self.given.streak:
            self.given.streak.clear()  # (the new level explains them)
        self.streak = []

    def _recenter(self) -> None:
        """Keep each profile's mean at zero (the level carries it), so the parts stay identifiable."""
        for prof, cnt in ((self.hod, self.hod_n), (self.dow, self.dow_n)):
            used = [i for i in range(len(prof)) if cnt[i]]
            if used:
                m = sum(prof[i] for i in used) / len(used)
                for i in used:
                    prof[i] -= m
                self.level += m
                self.prev_level += m

    # ---------------------------------------------------------------------------------- feedback
    def accept_current(self) -> None:
        """EXPECTED: the recent deviation is the new normal: re-baseline on it now, or on the next run
        when there is none in hand (a run still running long)."""
        if self.streak:
            self._rebaseline(sorted(self.streak)[len(self.streak) // 2])
        else:
            self.accept_next = True
        self.prev_left = 0
        self.hold = False

    def hold_incident(self) -> None:
        """INCIDENT: keep the current deviation out of the baseline until the metric is back to normal."""
        self.hold = True

    # -------------------------------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"log": self.log, "n": self.n, "level": self.level, "dev": self.dev,
                             "slope": [self.slope, self.level_t],
                             "dev_n": self.dev_n, "q95": self.q95, "gap": self.gap, "last_t": self.last_t}
        if self.boot:
            d["boot"] = self.boot
        for name in ("hod", "dow", "mon"):
            if any(getattr(self, name + "_n")):
                d[name], d[name + "_n"] = getattr(self, name), getattr(self, name + "_n")
        optional = {"streak": self.streak, "hold": self.hold, "accept_next": self.accept_next,
                    "zeros": self.zeros}
        d.update((k, v) for k, v in optional.items() if v)
        if self.prev_left:
            d["prev"] = [self.prev_level, self.prev_left]
        if self.episode:
            d["episode"] = [self.episode, self.ep_score, self.ep_quiet]
        if self.given is not None:
            d["given"] = self.given.to_json()
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> MetricBaseline:
        m = MetricBaseline(bool(d["log"]))
        m.n, m.level, m.dev, m.dev_n, m.gap, m.last_t = (d["n"], d["level"], d["dev"], d["dev_n"], d["gap"],
                                                         d["last_t"])
        m.q95, m.boot = d["q95"], list(d.get("boot", []))
        m.slope, m.level_t = d.get("slope", [0.0, 0.0])
        for name in ("hod", "dow", "mon"):
            if name in d:
                setattr(m, name, list(d[name]))
                setattr(m, name + "_n", list(d[name + "_n"]))
        pad = KINDS - len(m.mon)  # a state from before the holiday and last-business-day buckets
        m.mon, m.mon_n = m.mon + [0.0] * pad, m.mon_n + [0] * pad
        m.streak = list(d.get("streak", []))
        m.hold, m.accept_next = bool(d.get("hold")), bool(d.get("accept_next"))
        m.zeros = float(d.get("zeros", 0.0))
        if "episode" in d:
            m.episode, m.ep_score, m.ep_quiet = d["episode"]
        if "prev" in d:
            m.prev_level, m.prev_left = d["prev"][0], int(d["prev"][1])
        if "given" in d:
            m.given = Coupling.from_json(d["given"])
        return m
