"""Duration given rows: how much of a run's duration its volume explains.

A job's duration follows the rows it processed (duration ~ rows ** beta, 0 < beta <= 1). Judged
alone, a duration carries the volume's noise too; judged against the rows the same run reported, it
carries only its own. In log space, with both metrics' residuals against their expectations (r_d,
r_r: seasons, trend and the special days each model has learned), the conditional residual is

    e = r_d - beta * r_r

beta is the regression of r_d on r_r over ordinary runs (ordinary days, neither metric a suspect; EW
moments), shrunk towards 0 while the volume's variation says little, and kept in [0, BETA_MAX]. The
conditional scale is TAIL mean |e| (ordinary runs), at least Q_TAIL 95th percentiles of |e| (every
run of an ordinary day, flagged ones included), as the metric's own. Along a streak of runs longer
than their rows explain a run scores the streak's combined evidence too (Stouffer), as the metric's.
The metric model (metric.py) owns one for its duration and decides when it applies (longer than the
rows explain; not on a holiday or month-end whose own effect is not learned yet).

Pure, small JSON state: six numbers, and the errors of a streak while one lasts.
"""
from __future__ import annotations

import math
from typing import Any, Final

BETA_MAX: Final = 1.5
MOMENT_MEMORY: Final = 200.0  # runs
SCALE_MEMORY: Final = 30.0  # runs, as the metric's own scale
MIN_PAIRS: Final = 30  # ordinary runs before the coupling scores
TAIL: Final = 2.8
Q_TAIL: Final = 0.9
Q_GAIN: Final = 0.05
SHRINK: Final = 4.0  # pseudo-runs of "no coupling": beta = n Sxy / (n Sxx + SHRINK var(e)) in effect


STREAK_MAX: Final = 8  # conditional errors kept along a streak (a longer one is a shift, which clears it)


class Coupling:
    __slots__ = ("b", "dev", "n", "nd", "ok", "q95", "s", "streak", "sxx", "sxy")

    def __init__(self) -> None:
        self.n = 0  # ordinary pairs seen (moments)
        self.sxx = 0.0  # EW mean of r_r ** 2
        self.sxy = 0.0  # EW mean of r_r * r_d
        self.nd = 0  # conditional errors seen (scale)
        self.dev = 0.0  # EW mean |e|
        self.q95 = 0.0  # EW 95th percentile of |e|
        self.streak: list[float] = []  # e of the last runs in a row past half the line (as the metric's)
        # derived from the above, kept because they are read several times a run: not state
        self.b = 0.0  # beta
        self.s = 0.0  # the conditional scale before its floor
        self.ok = False  # ready to score

    def combined(self, e: float, s: float) -> float:
        """A run's z along a streak of runs longer than their rows explain: the larger of its own and the
        streak's combined evidence (Stouffer), as the metric's own score does for sustained deviations."""
        z = e / s
        st = self.streak
        if st and z > 0.0:
            comb = (sum(st) + e) / s / math.sqrt(len(st) + 1)
            if comb > z:
                return comb
        return z

    def track(self, e: float, suspect: bool) -> None:
        st = self.streak
        if not suspect:
            if st:
                st.clear()
            return
        st.append(e)
        if len(st) > STREAK_MAX:
            del st[0]

    def beta(self) -> float:
        return self.b

    def ready(self) -> bool:
        return self.ok

    def scale(self, floor: float) -> float:
        return floor if floor > self.s else self.s

    def _derive(self) -> None:
        b = 0.0
        if self.n and self.sxx > 0.0:
            # shrinkage: a slope measured on little volume variation (or few runs) is mostly noise
            var_e = (self.dev / 0.8) ** 2 if self.nd else 0.0
            b = self.sxy / (self.sxx + SHRINK * var_e / min(self.n, MOMENT_MEMORY))
        self.b = 0.0 if b < 0.0 else BETA_MAX if b > BETA_MAX else b
        s = TAIL * self.dev
        q = Q_TAIL * self.q95
        self.s = q if q > s else s
        self.ok = self.n >= MIN_PAIRS and self.nd >= MIN_PAIRS

    def learn(self, r_d: float, r_r: float, ordinary: bool) -> None:
        """One run's residuals (duration, rows) on an ordinary day. The 95th percentile learns from every
        such run, flagged ones included (as the metric's own: routine outliers set it, a rare anomaly
        cannot move it); the slope and the mean error only from `ordinary` ones (neither a suspect)."""
        e = r_d - self.beta() * r_r
        a = e if e > 0.0 else -e
        q = self.q95  # (from below, as the metric's: an overestimate would take ~400 runs to shrink)
        self.q95 = q + Q_GAIN * q * (0.95 if a > q else -0.05) if q > 0.0 else a / 20.0
        if ordinary:
            k = self.n = self.n + 1
            g = 1.0 / (k if k <= MOMENT_MEMORY else MOMENT_MEMORY)
            self.sxx += g * (r_r * r_r - self.sxx)
            self.sxy += g * (r_r * r_d - self.sxy)
            k = self.nd = self.nd + 1
            self.dev += (a - self.dev) / (k if k <= SCALE_MEMORY else SCALE_MEMORY)
        self._derive()

    def to_json(self) -> list[Any]:
        out: list[Any] = [self.n, self.sxx, self.sxy, self.nd, self.dev, self.q95]
        if self.streak:
            out.append(list(self.streak))
        return out

    @staticmethod
    def from_json(v: list[Any]) -> Coupling:
        c = Coupling()
        c.n, c.sxx, c.sxy, c.nd, c.dev, c.q95 = int(v[0]), float(v[1]), float(v[2]), int(v[3]), float(v[4]), \
            float(v[5])
        c.streak = [float(x) for x in v[6]] if len(v) > 6 else []
        c._derive()
        return c
