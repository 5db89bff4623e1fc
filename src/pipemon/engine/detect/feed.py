"""The detectors fed a recorded history, the clock following the records: the backtest's hot loop.

    feed_runs(suite, lines)     each run split into a START at its ts and a COMPLETION at ts + duration,
                                merged in time order; the suite ticks before each event; a START
                                says when its COMPLETION comes (no timer that could never fire)
    feed_blocks(make, lines)    feed_runs over blocks of pipelines, one suite each: the same findings
                                per pipeline, with a working set that stays in the CPU's cache
    feed_series(suite, lines)   one observe_value a point

Pure (the records are read and the flags written by pipemon.backtest) and typed, so that `pip install .`
compiles it with the detectors (setup.py): per run it costs about what the detectors do. The records are
any objects with the attributes of `Record` (backtest's decoded lines), and the suite any object with
the methods of `Suite` (a DetectorSuite, or a test's wrapper around one).
"""
from __future__ import annotations

import datetime as _dt
import heapq
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Protocol

from pipemon.engine.detect.base import Finding, RunStatus
from pipemon.model import EVENT_WORDS, STATUS_OF_TERMINAL

STATUS: Final[dict[str, RunStatus]] = {w: STATUS_OF_TERMINAL[t] for w, t in EVENT_WORDS.items()
                                      if t.is_terminal}
PROGRESS_EVERY: Final = 4096  # records between two calls of a progress callback


class Record(Protocol):
    @property
    def pipeline_id(self) -> str: ...
    @property
    def ts(self) -> str | None: ...
    @property
    def ts_unix(self) -> float | None: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def duration_s(self) -> float | None: ...
    @property
    def rows(self) -> float | None: ...
    @property
    def bytes(self) -> float | None: ...
    @property
    def status(self) -> str: ...
    @property
    def value(self) -> float | None: ...


class Suite(Protocol):
    def tick(self, now: float) -> list[Finding]: ...
    def next_due(self) -> float | None: ...
    def observe_start(self, pipeline_id: str, run_id: str, start: float, now: float,
                      nominal: float | None = None, ends: float | None = None) -> list[Finding]: ...
    def observe_completion(self, pipeline_id: str, run_id: str, start: float, status: RunStatus,
                           duration_s: float | None, rows: float | None, bytes_: float | None,
                           now: float) -> list[Finding]: ...
    def observe_value(self, pipeline_id: str, ts: float, value: float, now: float) -> list[Finding]: ...


def unix(line: Record) -> float:
    """A record's time in unix seconds."""
    ts_unix = line.ts_unix
    if ts_unix is not None:
        return float(ts_unix)
    ts = line.ts
    if ts is None:
        raise ValueError(f"{line.pipeline_id}: a record needs ts or ts_unix")
    d = _dt.datetime.fromisoformat(ts)  # "...Z" and "+hh:mm" alike; no zone means UTC
    return (d if d.tzinfo else d.replace(tzinfo=_dt.UTC)).timestamp()


def run_events(lines: Iterable[Record]) -> Iterator[tuple[float, Record | None, Record]]:
    """(time, None, line) for a START, (time, line, line) for a COMPLETION, in time order."""
    pending: list[tuple[float, int, Record]] = []
    for k, line in enumerate(lines):
        t = unix(line)
        while pending and pending[0][0] <= t:
            end, _, done = heapq.heappop(pending)
            yield end, done, done
        yield t, None, line
        heapq.heappush(pending, (t + (line.duration_s or 0.0), k, line))
    while pending:
        end, _, done = heapq.heappop(pending)
        yield end, done, done


def feed_runs(suite: Suite, lines: list[Record], on_progress: Callable[[int], None] | None = None,
              until: float | None = None) -> list[Finding]:
    """Feed time-ordered runs to the suite, ticking it before each event; every finding, in order.
    `on_progress(records done)` is called every PROGRESS_EVERY records. `until`: a last tick then, after
    the runs (the time of a later event of other pipelines, when these runs are a block of a fleet).

    run_events() inlined: its heap of pending completions, then each start, without a generator's
    resumption and a tuple per event."""
    out: list[Finding] = []
    done_records = 0
    tick, next_due = suite.tick, suite.next_due
    observe_start, observe_completion = suite.observe_start, suite.observe_completion
    pending: list[tuple[float, int, Record]] = []
    end = 0.0  # a start's completion time, known here: the suite need not time the run past it
    k = 0
    n = len(lines)
    next_t = unix(lines[0]) if n else 0.0  # the next start's time
    while True:
        if k < n:
            if pending and pending[0][0] <= next_t:  # a completion first
                t, _, line = heapq.heappop(pending)
                start = False
            else:
                t, line, start = next_t, lines[k], True
                end = t + (line.duration_s or 0.0)
                heapq.heappush(pending, (end, k, line))
                k += 1
                if k < n:
                    next_t = unix(lines[k])
        elif pending:
            t, _, line = heapq.heappop(pending)
            start = False
        else:
            break
        due = next_due()
        if due is not None and due <= t:
            out.extend(tick(t))
        pid = line.pipeline_id
        rid = line.run_id or f"{pid}@{line.ts_unix or line.ts}"
        if start:
            out.extend(observe_start(pid, rid, t, t, None, end))
            continue
        duration = line.duration_s
        begun = t - (duration or 0.0)
        word = line.status
        status = STATUS.get(word) or STATUS.get(word.lower())
        if status is None:
            raise ValueError(f"{pid} {rid}: unknown status {word!r}")
        out.extend(observe_completion(pid, rid, begun, status, duration, line.rows, line.bytes, t))
        done_records += 1
        if on_progress is not None and done_records % PROGRESS_EVERY == 0:
            on_progress(done_records)
    if until is not None:
        due = next_due()
        if due is not None and due <= until:
            out.extend(tick(until))
    if on_progress is not None:
        on_progress(done_records)
    return out


class _Offset:
    """A block's progress as the fleet's: records done in the blocks before, plus this one's."""

    def __init__(self, report: Callable[[int], None], base: int) -> None:
        self.report, self.base = report, base

    def __call__(self, n: int) -> None:
        self.report(self.base + n)


BLOCK: Final = 32  # pipelines fed together (benchmarks/anomaly.md, "Fifth round")


def feed_blocks(make_suite: Callable[[list[str]], Suite], lines: list[Record], block: int = BLOCK,
                on_progress: Callable[[int], None] | None = None) -> list[Finding]:
    """feed_runs over the fleet a block of `block` pipelines at a time (in order of first appearance), a
    suite each from `make_suite(pipeline ids)`; the findings block by block, each block's in order.

    A pipeline's findings are the same as when the whole fleet is fed at once: its state is its own, a
    tick fires a timer by its due time whatever the moment it runs at (so only before the pipeline's next
    event matters, and every block ticks before each of its events), and each block ends with a tick at
    the fleet's last event, which is where a whole-fleet feed ends (not after it: the block holding that
    event ends with it). Only the interleaving of different pipelines' findings differs. Why: 1,700
    pipelines' state no longer fits the cache, and a run's cost was half memory stalls."""
    ids: dict[str, list[Record]] = {}
    blocks: list[tuple[list[str], list[Record]]] = []
    for line in lines:
        mine = ids.get(line.pipeline_id)
        if mine is None:
            if not blocks or len(blocks[-1][0]) >= block:
                blocks.append(([], []))
            blocks[-1][0].append(line.pipeline_id)
            mine = ids[line.pipeline_id] = blocks[-1][1]
        mine.append(line)
    # the fleet's last event: the completion latest in (time, start order), as feed_runs' heap pops them
    last_end, last = -math.inf, ""
    for line in lines:
        end = unix(line) + (line.duration_s or 0.0)
        if end >= last_end:
            last_end, last = end, line.pipeline_id
    out: list[Finding] = []
    done = 0
    for pids, mine in blocks:
        step = None if on_progress is None else _Offset(on_progress, done)
        out.extend(feed_runs(make_suite(pids), mine, step, None if last in pids else last_end))
        done += len(mine)
    return out


def feed_series(suite: Suite, lines: list[Record], on_progress: Callable[[int], None] | None = None
                ) -> list[Finding]:
    """One observe_value a point with a value, in the records' order."""
    out: list[Finding] = []
    done_records = 0
    observe_value = suite.observe_value
    for line in lines:
        value = line.value
        if value is not None:
            t = unix(line)
            out.extend(observe_value(line.pipeline_id, t, float(value), t))
        done_records += 1
        if on_progress is not None and done_records % PROGRESS_EVERY == 0:
            on_progress(done_records)
    if on_progress is not None:
        on_progress(done_records)
    return out
