"""Small deterministic run histories for the detector tests, and a driver with a fake clock."""
from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterable, Iterator

from pipemon.engine.detect import DetectorSuite, Finding, RunObservation, RunStatus

DAY = 86400.0
HOUR = 3600.0
T0 = 1767571200.0  # 2026-01-05 00:00 UTC, a Monday


@dataclasses.dataclass
class Run:
    start: float
    duration_s: float
    rows: float
    status: RunStatus = RunStatus.SUCCEEDED
    run_id: str = ""


def series(slots: Iterable[float], rows: Callable[[float], float] = lambda t: 1e5,
           duration: Callable[[float], float] = lambda t: 600.0, noise: float = 0.05, jitter_s: float = 30.0,
           seed: int = 1) -> list[Run]:
    """Runs at the given slots: multiplicative log-normal noise, exponential start jitter."""
    rng = random.Random(seed)
    out = []
    for k, s in enumerate(slots):
        start = s + rng.expovariate(1 / jitter_s) if jitter_s else s
        out.append(Run(start, duration(s) * math.exp(rng.gauss(0, noise)), rows(s) * math.exp(rng.gauss(0, noise)),
                       run_id=f"r{k:05d}"))
    return out


def hourly(days: float, t0: float = T0, minute: int = 0) -> list[float]:
    return [t0 + minute * 60 + h * HOUR for h in range(int(days * 24))]


def daily(days: int, t0: float = T0, at_s: float = 2 * HOUR, weekdays_only: bool = False) -> list[float]:
    out = []
    for d in range(days):
        day = t0 + d * DAY
        if weekdays_only and ((day // DAY + 3) % 7) >= 5:
            continue
        out.append(day + at_s)
    return out


def weekly_profile(t: float, weekend: float = 0.5, monday: float = 1.0) -> float:
    dow = int((t // DAY + 3) % 7)
    return weekend if dow >= 5 else monday if dow == 0 else 1.0


def daily_profile(t: float, amplitude: float = 0.4) -> float:
    return math.exp(amplitude * math.sin(2 * math.pi * (t % DAY) / DAY))


def replay(suite: DetectorSuite, pipeline_id: str, runs: list[Run]) -> list[Finding]:
    """Drive the suite as the backtest does: a START at each start, a completion at start + duration,
    the clock ticking to every due deadline before each event."""
    events: list[tuple[float, int, Run | None, Run]] = []
    for k, r in enumerate(runs):
        events.append((r.start, 2 * k, None, r))
        events.append((r.start + r.duration_s, 2 * k + 1, r, r))
    events.sort(key=lambda e: (e[0], e[1]))
    out: list[Finding] = []
    for t, _, done, r in events:
        due = suite.next_due()
        if due is not None and due <= t:
            out.extend(suite.tick(t))
        rid = r.run_id or f"{pipeline_id}@{r.start}"
        if done is None:
            out.extend(suite.observe_start(pipeline_id, rid, r.start, t))
        else:
            out.extend(suite.observe_run(pipeline_id, RunObservation(
                rid, r.start, t, r.status, r.duration_s, r.rows if r.status is RunStatus.SUCCEEDED else 0.0,
                None), t))
    return out


def after(findings: Iterable[Finding], t: float) -> Iterator[Finding]:
    return (f for f in findings if f.time >= t)
