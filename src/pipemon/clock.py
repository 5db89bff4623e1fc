"""The one source of time.

Every time-dependent rule reads `clock.now()` (unix seconds, float) from an injected clock, so the
same code runs live (`WallClock`) and over recorded events (`FakeClock`, moved by replay and tests).
The engine never calls `time.time()` itself.
"""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class WallClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to: tests and replay drive it."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def set(self, t: float) -> None:
        # Time never runs backwards: replaying out-of-order events must not rewind timers.
        if t > self._now:
            self._now = float(t)

    def advance(self, seconds: float) -> None:
        self._now += seconds


class DemoClock:
    """The demo's time: set freely while history is replayed, then running `speed` times faster than
    the wall clock from where it stands."""

    def __init__(self, start: float, speed: float = 60.0) -> None:
        self._base = float(start)
        self.speed = speed
        self._wall0: float | None = None

    def now(self) -> float:
        if self._wall0 is None:
            return self._base
        return self._base + (time.time() - self._wall0) * self.speed

    def set(self, t: float) -> None:
        if self._wall0 is None and t > self._base:
            self._base = float(t)

    def go(self) -> None:
        """From now on, run: simulated time advances `speed` seconds per wall-clock second."""
        self._wall0 = time.time()
