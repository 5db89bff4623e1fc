"""The event stream in time order: fed live to the demo, backfilled, or exported as JSON lines.

Runs are simulated in windows of scheduled time and their events pushed on a heap. Every event
happens at or after its run's scheduled slot, so once the windows up to T are simulated, every
event before T is on the heap: that is when it may be handed out. No HTTP here: callers post.
"""
from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec

from pipemon.sim.events import Entry, SimEvent, expand
from pipemon.sim.fleet import DEFAULT_SIZE, Fleet, build_fleet
from pipemon.sim.incidents import DEFAULT_INCIDENTS, Incident, IncidentSettings, Planner
from pipemon.sim.native import to_native
from pipemon.sim.openlineage import to_openlineage
from pipemon.sim.runs import Simulation
from pipemon.sim.schedule import DAY, HOUR, SECOND, to_ms, to_seconds

DEFAULT_START = 1736121600.0  # 2025-01-06T00:00:00Z, a Monday: exports are reproducible by default
_WINDOW_MS = 6 * HOUR


class Format(enum.StrEnum):
    OPENLINEAGE = "openlineage"
    NATIVE = "native"


FORMATTERS: dict[Format, Callable[[SimEvent], dict]] = {Format.OPENLINEAGE: to_openlineage,
                                                        Format.NATIVE: to_native}


class EventStream:
    """All events of a simulation started at `start_ms`, taken in order, generated on demand."""

    def __init__(self, fleet: Fleet, start_ms: int, incidents: IncidentSettings) -> None:
        self.planner = Planner(fleet, start_ms, incidents)
        self._simulation = Simulation(fleet, self.planner)
        self._heap: list[Entry] = []
        self._simulated_until = start_ms

    def take_until(self, end_ms: int) -> Iterator[SimEvent]:
        """Events with time < end_ms not taken before, in order."""
        heap = self._heap
        while True:
            limit = min(end_ms, self._simulated_until)
            while heap and heap[0][0] < limit:
                yield heapq.heappop(heap)[-1]
            if self._simulated_until >= end_ms:
                return
            window_end = self._simulated_until + _WINDOW_MS
            for batch in self._simulation.step(self._simulated_until, window_end):
                for entry in expand(batch, self.planner):
                    heapq.heappush(heap, entry)
            self._simulated_until = window_end


class Feeder:
    """Hands out the simulated fleet's events as simulated time passes; the caller posts them.

        feeder = Feeder(build_fleet(), start=clock.now() - 2 * 86400)
        for event in feeder.history(feeder.position, clock.now()):   # backfill two days, fast
            post(event)
        while True:                                                    # then live, on the demo clock
            for event in feeder.due(clock.now()):
                post(event)
            sleep(...)
    """

    def __init__(self, fleet: Fleet, start: float, *, fmt: Format | str = Format.OPENLINEAGE,
                 incidents: IncidentSettings = DEFAULT_INCIDENTS) -> None:
        self.fleet = fleet
        self.start = start
        self._format = FORMATTERS[Format(fmt)]
        self._stream = EventStream(fleet, to_ms(start), incidents)
        self._position = to_ms(start)  # every event before this was handed out or skipped

    @property
    def position(self) -> float:
        """Simulated time up to which events have been handed out, unix seconds."""
        return to_seconds(self._position)

    def due(self, now: float) -> list[dict]:
        """Events with time ≤ `now` not handed out yet, in order."""
        end = to_ms(now) + 1
        if end <= self._position:
            return []
        self._position = end
        return [self._format(e) for e in self._stream.take_until(end)]

    def history(self, start: float, end: float) -> Iterator[dict]:
        """Events in [start, end), in order; events between `position` and `start` are skipped.

        The feeder moves on as the iterator is consumed, so `due()` continues where it stopped.
        """
        start_ms, end_ms = to_ms(start), to_ms(end)
        if start_ms < self._position:
            raise ValueError(f"events before {start} were already handed out (position {self.position})")
        return self._history(start_ms, end_ms)

    def _history(self, start_ms: int, end_ms: int) -> Iterator[dict]:
        deque(self._stream.take_until(start_ms), maxlen=0)  # skipped, never formatted
        self._position = start_ms
        for event in self._stream.take_until(end_ms):
            self._position = event.time_ms + 1
            yield self._format(event)
        self._position = max(self._position, end_ms)

    def incidents(self, start: float | None = None, end: float | None = None) -> list[Incident]:
        """Ground truth: incidents whose first affected run is scheduled in [start, end)."""
        start_ms = to_ms(self.start if start is None else start)
        end_ms = self._position if end is None else to_ms(end)
        return self._stream.planner.incidents(start_ms, end_ms)


@dataclass(frozen=True)
class ExportSummary:
    events_path: Path
    incidents_path: Path
    events: int
    incidents: int


def export(path: str | Path, days: float = 30, *, seed: int = 0, start: float = DEFAULT_START,
           pipelines: int = DEFAULT_SIZE, fmt: Format | str = Format.OPENLINEAGE,
           incidents: IncidentSettings = DEFAULT_INCIDENTS, incidents_path: str | Path | None = None,
           on_progress: Callable[[float], None] | None = None) -> ExportSummary:
    """Write `days` of the fleet's events as JSON lines in event-time order, and the ground truth
    next to it (`events.jsonl` → `events.incidents.jsonl` unless `incidents_path` is given).
    `on_progress(seconds of events written)` is called every 10,000 events."""
    path = Path(path)
    feeder = Feeder(build_fleet(seed, pipelines), start, fmt=fmt, incidents=incidents)
    end = start + days * DAY / SECOND
    encode = msgspec.json.Encoder().encode
    count = 0
    with path.open("wb") as out:
        chunk: list[bytes] = []
        for event in feeder.history(start, end):
            chunk.append(encode(event))
            if len(chunk) == 10_000:
                count += _write_lines(out, chunk)
                if on_progress is not None:
                    on_progress(feeder.position - start)
        count += _write_lines(out, chunk)
    truth_path = Path(incidents_path) if incidents_path else incidents_path_for(path)
    truth = feeder.incidents(start, end)
    write_incidents(truth_path, truth)
    return ExportSummary(path, truth_path, count, len(truth))


def export_incidents(path: str | Path, days: float = 30, *, seed: int = 0, start: float = DEFAULT_START,
                     pipelines: int = DEFAULT_SIZE, incidents: IncidentSettings = DEFAULT_INCIDENTS
                     ) -> list[Incident]:
    """Only the ground truth of an `export` with the same arguments (no runs are simulated)."""
    planner = Planner(build_fleet(seed, pipelines), to_ms(start), incidents)
    truth = planner.incidents(to_ms(start), to_ms(start + days * DAY / SECOND))
    write_incidents(Path(path), truth)
    return truth


def incidents_path_for(events_path: Path) -> Path:
    return events_path.with_name(events_path.name.removesuffix(".jsonl") + ".incidents.jsonl")


def write_incidents(path: Path, incidents: list[Incident]) -> None:
    encode = msgspec.json.Encoder().encode
    path.write_bytes(b"".join(encode(i.to_dict()) + b"\n" for i in incidents))


def _write_lines(out: BinaryIO, chunk: list[bytes]) -> int:
    n = len(chunk)
    if n:
        out.write(b"\n".join(chunk) + b"\n")
        chunk.clear()
    return n
