"""Backtest: the live detectors over a recorded history, the clock following the records.

Input (JSONL):
  runs     {"pipeline_id","run_id","ts"|"ts_unix","duration_s","rows"[,"bytes"],"status"}, one run a line in
           start order (`pipemon export runs` writes it from a store). status is a word of model.EventWord
           (success, failed, aborted …; default success); a run that has not finished (start, running) is
           skipped and counted. A run line is split into a START at ts and a COMPLETION at ts + duration,
           merged in time order, so a run's duration and rows are never used before it finished.
  series   {"pipeline_id","ts"|"ts_unix","value"}, a generic metric series.
  pipelines (optional) {"pipeline_id","cron"?,"interval_s"?,"timezone"?,"grace_s"?,"max_duration_s"?,
           "calendar"?}: declared schedules and holiday calendars (`US`, `UK`, `DE` ...: the holidays
           package's country codes); any other key (labels, scorer parameters) is ignored. Without it
           every schedule is learned from the runs.
Before each event the suite ticks: every deadline up to that moment fires, stamped with its own
time (as a live engine's timer would have), never one from the future.
Output: one flag a line, {"pipeline_id","ts","ts_unix","score","metric","kind","explanation"}, in time
order (ties by pipeline). The fleet is fed a block of pipelines at a time (feed.feed_blocks): the same flags.
"""
from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise
from typing import IO, cast

import msgspec

from pipemon import calendars
from pipemon.engine.detect import DetectorSuite, DetectSpec, Finding
from pipemon.engine.detect.base import iso_utc
from pipemon.engine.detect.feed import (
    BLOCK,
    PROGRESS_EVERY,
    STATUS,
    Record,
    Suite,
    feed_blocks,
    feed_runs,
    feed_series,
    run_events,
)
from pipemon.engine.detect.feed import unix as _unix
from pipemon.errors import PipemonError
from pipemon.model import EVENT_WORDS

__all__ = ["PROGRESS_EVERY", "BacktestStats", "BadLine", "InputFormat", "backtest", "drive", "flag",
           "read_lines", "read_pipelines", "read_records", "run_events"]


class InputFormat(str, Enum):
    RUNS = "runs"
    SERIES = "series"


class _Line(msgspec.Struct, gc=False):  # plain data, no cycles: a million of them cost the GC nothing
    pipeline_id: str
    ts: str | None = None
    ts_unix: float | None = None
    run_id: str | None = None
    duration_s: float | None = None
    rows: float | None = None
    bytes: float | None = None
    status: str = "success"
    value: float | None = None


class _Declared(msgspec.Struct):
    pipeline_id: str
    cron: str | None = None
    interval_s: float | None = None
    timezone: str = "UTC"
    grace_s: float | None = None
    max_duration_s: float | None = None
    calendar: str | None = None


_STATUS = STATUS
_UNFINISHED = frozenset(w for w, t in EVENT_WORDS.items() if not t.is_terminal)


class BadLine(PipemonError):
    """A line of an input that cannot be read; the message starts with its number. `declared`: the line is
    one of the declared schedules' (--pipelines), not of the runs."""

    def __init__(self, message: str, declared: bool = False) -> None:
        super().__init__(message)
        self.declared = declared


@dataclass(frozen=True, slots=True)
class BacktestStats:
    records: int
    findings: int
    skipped: int  # runs that had not finished (start, running): nothing to learn from yet
    parse_s: float  # CPU seconds reading and decoding the input
    detect_s: float  # CPU seconds in the detectors

    @property
    def records_per_s(self) -> float:
        return self.records / self.detect_s if self.detect_s > 0 else float("inf")


def read_lines(f: Iterable[bytes], fmt: InputFormat = InputFormat.RUNS) -> list[_Line]:
    return read_records(f, fmt)[0]


def read_records(f: Iterable[bytes], fmt: InputFormat = InputFormat.RUNS) -> tuple[list[_Line], int]:
    """The records in time order (by start), a file that is not sorted stably, and how many unfinished runs
    were skipped. A line that cannot be read raises BadLine with its number."""
    dec = msgspec.json.Decoder(_Line)
    lines: list[_Line] = []
    times: list[float] = []
    skipped = 0
    for n, raw in enumerate(f, 1):
        if not raw.strip():
            continue
        try:
            line = dec.decode(raw)
            t = _unix(line)
        except msgspec.ValidationError as e:  # a DecodeError too: test it first
            raise BadLine(f"line {n}: {e}") from None
        except msgspec.DecodeError as e:
            raise BadLine(f"line {n}: not valid JSON ({e})") from None
        except (ValueError, OverflowError) as e:
            raise BadLine(f"line {n}: {e}") from None
        if fmt is InputFormat.RUNS:
            word = line.status.strip().lower()
            if word in _UNFINISHED:
                skipped += 1
                continue
            if word not in _STATUS:
                words = f"{', '.join(_STATUS)} (or {', '.join(sorted(_UNFINISHED))}: not finished, skipped)"
                raise BadLine(f"line {n}: unknown status {line.status!r}; expected one of {words}")
            line.status = word
        line.pipeline_id = sys.intern(line.pipeline_id)  # one string per pipeline: lookups match by identity
        lines.append(line)
        times.append(t)
    if any(b < a for a, b in pairwise(times)):
        order = sorted(range(len(lines)), key=times.__getitem__)
        lines = [lines[k] for k in order]
    return lines, skipped


def read_pipelines(f: IO[bytes], sensitivity: float, years: tuple[int, ...] = ()) -> dict[str, DetectSpec]:
    """Declared pipelines; a named calendar brings its holidays over `years` (the records' years)."""
    dec = msgspec.json.Decoder(_Declared)
    out = {}
    for n, raw in enumerate(f, 1):
        if raw.strip():
            try:
                d = dec.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise BadLine(f"line {n}: {e}", declared=True) from None
            cal = d.calendar or None
            try:
                hol = calendars.holiday_days(cal, years) if cal else frozenset()
            except ValueError as e:
                raise BadLine(f"line {n} ({d.pipeline_id}): {e}", declared=True) from None
            out[sys.intern(d.pipeline_id)] = DetectSpec(d.cron or None, d.timezone, d.interval_s, d.grace_s,
                                                        d.max_duration_s, sensitivity,
                                                        calendar=cal, holidays=hol)
    return out


def drive(suite: Suite, lines: list[_Line], fmt: InputFormat,
          on_progress: Callable[[int], None] | None = None) -> list[Finding]:
    """Feed time-ordered records to the suite, ticking it before each event; every finding, in order.
    `on_progress(records done)` is called every PROGRESS_EVERY records. (The loop is engine.detect.feed's,
    compiled with the detectors.)"""
    if fmt is InputFormat.SERIES:
        return feed_series(suite, cast(list[Record], lines), on_progress)
    return feed_runs(suite, cast(list[Record], lines), on_progress)


def backtest(runs: Iterable[bytes], out: IO[str], pipelines: IO[bytes] | None = None,
             sensitivity: float = 1.0, fmt: InputFormat = InputFormat.RUNS,
             on_start: Callable[[int], Callable[[int], None] | None] | None = None,
             block: int = BLOCK) -> BacktestStats:
    """Read the records (and declared schedules), run the detectors over them, write the flags.
    `on_start(records)`, once they are read, may give drive() its progress callback. `block`: pipelines
    fed together (feed_blocks; the flags are the same whatever it is)."""
    # CPU time of this process: "runs per second of one core", whatever else the machine is doing
    t0 = time.process_time()
    lines, skipped = read_records(runs, fmt)
    years = calendars.years_spanning((_unix(lines[0]), _unix(lines[-1]))) if lines else ()
    specs = read_pipelines(pipelines, sensitivity, years) if pipelines is not None else {}
    t1 = time.process_time()

    def suite_of(pids: Iterable[str]) -> DetectorSuite:
        suite = DetectorSuite(sensitivity)
        for pid in pids:
            spec = specs.get(pid)
            if spec is not None:
                suite.configure(pid, spec)
        return suite
    # No automatic garbage collection meanwhile: the detectors make no reference cycles (a collection after
    # the 1 M-run benchmark finds none), and the full collections a growing state triggers, each walking
    # the whole fleet's state, were ~6 % of the time. The cyclic collector is back on for the rest.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        progress = on_start(len(lines)) if on_start is not None else None
        if fmt is InputFormat.SERIES:
            findings = drive(suite_of(()), lines, fmt, progress)
        else:  # a block of pipelines at a time: the same findings, faster (feed_blocks)
            findings = feed_blocks(suite_of, cast(list[Record], lines), block, progress)
        # in time order, a pipeline's at one instant as they came: whatever order the blocks ran in
        findings.sort(key=_flag_order)
    finally:
        if gc_was_on:
            gc.enable()
    t2 = time.process_time()
    for f in findings:
        out.write(json.dumps(flag(f)) + "\n")
    return BacktestStats(len(lines), len(findings), skipped, t1 - t0, t2 - t1)


def _flag_order(f: Finding) -> tuple[float, str]:
    return f.time, f.pipeline_id


def flag(f: Finding) -> dict[str, object]:
    """A finding in the benchmark's flag format (plus kind and explanation)."""
    return {"pipeline_id": f.pipeline_id, "ts": iso_utc(f.time), "ts_unix": f.time,
            "score": round(f.score, 3), "metric": f.metric, "kind": f.kind.value,
            "explanation": f.explanation}
