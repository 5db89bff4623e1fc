"""Duration given rows: how much of a run's duration its volume explains.

A job's duration follows the rows it processed (duration ~ rows ** beta, 0 < beta <= 1). Judged
alone, a duration carries the volume's noise too, and every holiday dip, month-end peak or volume
level shift shows up in it as well; judged against the rows the same run reported, it carries only
its own. In log space, with both metrics' residuals against their ordinary-day expectations
(r_d, r_r), the conditional residual is

    e = r_d - beta * r_r

beta is the regression of r_d on r_r over ordinary runs (EW moments; no coupling, beta 0, until
the volume's residuals say something), shrunk towards 0 while the evidence is thin, and kept in
[0, BETA_MAX]. The conditional scale is TAIL mean |e| (at least Q_TAIL 95th percentiles), as the
metric's own. Special days need no case of their own: a holiday's low volume explains its short
runs, and a duration spike on a holiday stands out against the rows of that day.

Pure, small JSON state (seven numbers). The metric model (metric.py) owns one for its duration.
"""
from __future__ import annotations

from typing import Any

BETA_MAX = 1.5
MOMENT_MEMORY = 200.0  # runs
SCALE_MEMORY = 30.0  # runs, as the metric's own scale
MIN_PAIRS = 30  # ordinary runs before the coupling scores
TAIL = 2.8
Q_TAIL = 0.9
Q_GAIN = 0.05
SHRINK = 4.0  # pseudo-runs of "no coupling": beta = n Sxy / (n Sxx + SHRINK var(e)) in effect


class Coupling:
    __slots__ = ("dev", "n", "nd", "q95", "sxx", "sxy")

    def __init__(self) -> None:
        self.n = 0  # ordinary pairs seen (moments)
        self.sxx = 0.0  # EW mean of r_r ** 2
        self.sxy = 0.0  # EW mean of r_r * r_d
        self.nd = 0  # conditional errors seen (scale)
        self.dev = 0.0  # EW mean |e|
        self.q95 = 0.0  # EW 95th percentile of |e|

    def beta(self) -> float:
        if not self.n or self.sxx <= 0.0:
            return 0.0
        # shrinkage: a slope measured on little volume variation (or few runs) is mostly noise
        var_e = (self.dev / 0.8) ** 2 if self.nd else 0.0
        b = self.sxy / (self.sxx + SHRINK * var_e / min(self.n, MOMENT_MEMORY))
        return 0.0 if b < 0.0 else BETA_MAX if b > BETA_MAX else b

    def ready(self) -> bool:
        return self.n >= MIN_PAIRS and self.nd >= MIN_PAIRS

    def scale(self, floor: float) -> float:
        s = TAIL * self.dev
        q = Q_TAIL * self.q95
        s = q if q > s else s
        return floor if floor > s else s

    def learn(self, r_d: float, r_r: float) -> None:
        """One ordinary run's residuals (duration, rows), neither a suspect."""
        e = r_d - self.beta() * r_r
        k = self.n = self.n + 1
        g = 1.0 / (k if k <= MOMENT_MEMORY else MOMENT_MEMORY)
        self.sxx += g * (r_r * r_r - self.sxx)
        self.sxy += g * (r_r * r_d - self.sxy)
        a = e if e > 0.0 else -e
        k = self.nd = self.nd + 1
        self.dev += (a - self.dev) / (k if k <= SCALE_MEMORY else SCALE_MEMORY)
        q = self.q95  # (from below, as the metric's: an overestimate would take ~400 runs to shrink)
        self.q95 = q + Q_GAIN * q * (0.95 if a > q else -0.05) if q > 0.0 else a / 20.0

    def to_json(self) -> list[float]:
        return [self.n, self.sxx, self.sxy, self.nd, self.dev, self.q95]

    @staticmethod
    def from_json(v: list[Any]) -> Coupling:
        c = Coupling()
        c.n, c.sxx, c.sxy, c.nd, c.dev, c.q95 = int(v[0]), float(v[1]), float(v[2]), int(v[3]), float(v[4]), \
            float(v[5])
        return c
