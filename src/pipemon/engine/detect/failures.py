"""Failure bursts: more consecutive failures than the pipeline's own failure rate makes plausible.

The rate p is a forgetful count (memory ~200 runs) with a prior of 1 failure in 40 runs, so a
pipeline that never failed is not certain never to fail. A streak of k failures has probability about
p**k under that rate; more exactly, as the rate is only as sure as its counts, the product of
(fails + i) / (runs + i) for its i-th failure (beta-binomial: a young pipeline's few runs say little, a
mature one's p**k). The score is its z-like equivalent, ALARM_SCORE * sqrt(ln P / ln ALPHA) with
ALPHA = 1e-4, so the default alarm needs P <= 1e-4: on a mature pipeline 2 in a row at p <= 1 %, 3 at
<= 4.6 %, 6 at 20 %. An isolated failure is never an anomaly, at any sensitivity: a burst is at least
MIN_STREAK (2) failures. One finding per streak. A streak is judged against the rate before it: its
failures join the rate only once a success ends it unflagged (counted into p as they came, a young
pipeline's third failure met p^3 at a rate its first two had quintupled); those of a flagged streak stay
out, unless the operator says it is EXPECTED.
"""
from __future__ import annotations

import math
from typing import Any, Final

from pipemon.engine.detect.base import ALARM_SCORE, Direction, Finding, FindingKind

ALPHA: Final = 1e-4
MIN_RUNS: Final = 20
MIN_STREAK: Final = 2
_KEEP: Final = 1.0 - 1.0 / 200.0
_PRIOR_FAIL, _PRIOR_RUNS = 0.5, 20.0
_QUIET, _FLAGGED, _ACCEPTED = 0, 1, 2  # the current streak's state


class FailureRate:
    __slots__ = ("fails", "held", "n", "runs", "state", "streak")

    def __init__(self) -> None:
        self.fails = 0.0  # forgetful counts
        self.runs = 0.0
        self.n = 0  # runs seen (for cold start)
        self.streak = 0  # consecutive failures up to now
        self.state = _QUIET
        self.held = 0  # the current streak's failures, not (yet) counted into the rate

    def rate(self) -> float:
        return (self.fails + _PRIOR_FAIL) / (self.runs + _PRIOR_RUNS)

    def score(self, failed: bool) -> float:
        """The z-like score of the streak this run would make. Pure."""
        if not failed or self.n < MIN_RUNS or self.streak + 1 < MIN_STREAK:
            return 0.0
        return ALARM_SCORE * math.sqrt(self.log_chance(self.streak + 1) / math.log(ALPHA))

    def log_chance(self, k: int) -> float:
        """ln P(k failures in a row) under the rate learned before the streak, uncertain as its counts
        are (beta-binomial: the i-th failure's chance is (fails + i) / (runs + i), prior included). A
        young pipeline's rate is a guess, and a few failures in a row move it. Pure."""
        a, n = self.fails + _PRIOR_FAIL, self.runs + _PRIOR_RUNS
        return sum(math.log((a + i) / (n + i)) for i in range(k))

    def observe(self, pipeline_id: str, run_id: str, t: float, failed: bool,
                sensitivity: float) -> Finding | None:
        """Score, then learn, one finished run."""
        s = self.score(failed) if failed else 0.0
        finding = None
        if s >= ALARM_SCORE / sensitivity and self.state == _QUIET:
            self.state = _FLAGGED
            p, k = self.rate(), self.streak + 1
            finding = Finding(
                pipeline_id, FindingKind.FAILURE_RATE, "status", t, run_id, float(k), p, None, None, s,
                Direction.HIGH,
                f"{k} failed runs in a row; this pipeline fails {p:.1%} of runs "
                f"(chance of such a streak {math.exp(self.log_chance(k)):.0e})")
        self.learn(failed)
        return finding

    def learn(self, failed: bool) -> None:
        self.n += 1
        if failed:
            self.streak += 1
            if self.state != _ACCEPTED:
                self.held += 1  # judged against the rate before the streak: held out for now
                return
            self._count(True)
            return
        if self.state == _QUIET:
            for _ in range(self.held):  # an unflagged streak was the pipeline's normal failing
                self._count(True)
        # (a flagged streak's failures stay out: a burst is not the pipeline's normal rate)
        self.streak, self.state, self.held = 0, _QUIET, 0
        self._count(False)

    def _count(self, failed: bool) -> None:
        self.fails = self.fails * _KEEP + failed
        self.runs = self.runs * _KEEP + 1.0

    def accept_current(self) -> None:
        """EXPECTED: this streak is normal for the pipeline: count it into the rate, stop flagging it."""
        if self.state == _FLAGGED:
            self.fails += self.held
            self.runs += self.held
            self.held, self.state = 0, _ACCEPTED

    def to_json(self) -> dict[str, Any]:
        return {"f": self.fails, "r": self.runs, "n": self.n, "k": self.streak, "st": self.state,
                "held": self.held}

    @staticmethod
    def from_json(d: dict[str, Any]) -> FailureRate:
        f = FailureRate()
        f.fails, f.runs, f.n, f.streak, f.state, f.held = d["f"], d["r"], d["n"], d["k"], d["st"], d["held"]
        return f
