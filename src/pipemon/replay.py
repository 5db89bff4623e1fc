"""Replay: the very same engine over recorded events, with the clock following event time.

Events (OpenLineage or native JSON lines, in event-time order) go through the same front-door parsers,
writer and stages (health, alerts) as live traffic; between events the clock ticks every `tick` seconds so
timers fire (lateness, group_wait, escalation); at the end it advances to `until`. Nothing is sent: each
notification that would have been is written as one JSON object a line. The store is a throwaway SQLite
file (synchronous off, one commit per hour of event time: nothing here needs to survive a crash).
"""
from __future__ import annotations

import collections
import contextlib
import json
import math
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from pipemon.clock import FakeClock
from pipemon.config import Settings
from pipemon.errors import IngestError
from pipemon.ingest import native, openlineage
from pipemon.ingest.common import iso
from pipemon.model import Event, Notification

BATCH = 2000
COMMIT_EVERY_S = 3600.0  # of event time: a replay commits once an hour of it, not every batch and tick
SENDS = frozenset({"trigger", "escalate", "repeat"})
PAGING = frozenset({"critical", "error"})


@dataclass
class ReplayResult:
    events: int = 0
    rejected: int = 0
    notifications: int = 0
    seconds: float = 0.0
    start: float | None = None
    end: float | None = None
    pages_by_receiver_week: dict[str, collections.Counter] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter))
    pages_by_team_week: dict[str, collections.Counter] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter))
    naive_by_team: collections.Counter = field(default_factory=collections.Counter)
    pages_by_team: collections.Counter = field(default_factory=collections.Counter)
    other_by_team: collections.Counter = field(default_factory=collections.Counter)
    repeats_by_team: collections.Counter = field(default_factory=collections.Counter)


def notification_line(n: Notification) -> dict[str, Any]:
    return {"time": iso(n.time), "receiver": n.receiver, "action": n.action.value, "group_key": n.group_key,
            "alerts": [{"fingerprint": a.fingerprint, "pipeline": a.pipeline, "team": a.team, "kind": a.kind,
                        "severity": a.severity.value, "state": a.state.value, "summary": a.summary}
                       for a in n.alerts]}


def read_events(lines: Iterator[bytes], result: ReplayResult) -> Iterator[Event]:
    """Either format, line by line; a bad line is counted and skipped, as the live service would reject it."""
    for raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        try:
            parse = openlineage.parse if b'"eventTime"' in raw else native.parse
            evs = parse(raw, 0.0)
        except IngestError:
            result.rejected += 1
            continue
        yield from evs


def replay(settings: Settings, source: Iterable[bytes], out: IO[str] | None, *, until: float | None = None,
           tick: float = 60.0, db_dir: str | None = None) -> ReplayResult:
    from pipemon.app import build

    result = ReplayResult()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=db_dir, prefix="pipemon-replay-") as tmp:
        clock = FakeClock(0.0)
        pm = build(f"sqlite:///{Path(tmp) / 'replay.db'}", settings, clock=clock, synchronous="OFF",
                   deliver=False)
        # no checkpoints and no health views: the replay store is thrown away
        pm.health.checkpoint_s = 1e18
        pm.health.views = False

        def record(ns: list[Notification]) -> None:
            for n in ns:
                result.notifications += 1
                if out is not None:
                    out.write(json.dumps(notification_line(n)) + "\n")
                if n.action.value not in SENDS:
                    continue
                teams = sorted({a.team for a in n.alerts})
                if not any(a.severity.value in PAGING for a in n.alerts):
                    for team in teams:  # a warning or info message: not a page
                        result.other_by_team[team] += 1
                    continue
                wk = _week(n.time)
                result.pages_by_receiver_week[n.receiver][wk] += 1
                for team in teams:
                    result.pages_by_team_week[team][wk] += 1
                    result.pages_by_team[team] += 1
                    if n.action.value == "repeat":
                        result.repeats_by_team[team] += 1
        pm.alerts.on_notifications.append(record)
        try:
            _drive(pm, clock, read_events(iter(source), result), result, until, tick)
            result.naive_by_team = naive_pages(pm)
        finally:
            pm.close()
    result.seconds = time.perf_counter() - t0
    return result


def _drive(pm, clock: FakeClock, events: Iterator[Event], result: ReplayResult, until: float | None,
           tick: float) -> None:
    with contextlib.ExitStack() as held:  # one transaction per COMMIT_EVERY_S of event time
        _drive_held(pm, clock, events, result, until, tick, held)


def _drive_held(pm, clock: FakeClock, events: Iterator[Event], result: ReplayResult, until: float | None,
                tick: float, held: contextlib.ExitStack) -> None:
    batch: list[Event] = []
    next_tick: float | None = None
    held_from = -math.inf
    for ev in events:
        t = ev.time
        if next_tick is None:
            clock.set(t)
            next_tick = t + tick
            result.start = t
        while t >= next_tick:  # timers fire between events, not only when the next event comes
            _flush(pm, batch)
            clock.set(next_tick)
            pm.writer.tick()
            next_tick += tick
        if t - held_from >= COMMIT_EVERY_S:
            _flush(pm, batch)
            held.close()
            held.enter_context(pm.writer.one_transaction())
            held_from = t
        clock.set(t)
        batch.append(ev)
        result.events += 1
        if len(batch) >= BATCH:
            _flush(pm, batch)
    _flush(pm, batch)
    result.end = clock.now()
    if until is not None and next_tick is not None:
        while next_tick <= until:
            clock.set(next_tick)
            pm.writer.tick()
            next_tick += tick
        clock.set(until)
        pm.writer.tick()
        result.end = until


def _flush(pm, batch: list[Event]) -> None:
    if batch:
        pm.writer.ingest(batch)
        batch.clear()


def naive_pages(pm) -> collections.Counter:
    """What a naive policy would have paged: one alert per failed run and one per late or missing run."""
    counts: collections.Counter = collections.Counter()
    with pm.db.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT p.team, COUNT(*) FROM runs r JOIN pipelines p ON p.id = r.pipeline_id "
            "WHERE r.parent_run_id IS NULL AND r.status IN ('failed', 'aborted') GROUP BY p.team").all()
        for team, n in rows:
            counts[team or "unassigned"] += n
        rows = conn.exec_driver_sql(
            "SELECT p.team, COUNT(*) FROM findings f JOIN pipelines p ON p.id = f.pipeline_id "
            "WHERE f.kind IN ('late', 'missing') GROUP BY p.team").all()
        for team, n in rows:
            counts[team or "unassigned"] += n
    return counts


def _week(t: float) -> str:
    y, w, _ = datetime.fromtimestamp(t, timezone.utc).isocalendar()
    return f"{y}-W{w:02d}"


def summary_table(result: ReplayResult) -> list[tuple[str, str, str, str, str]]:
    """(team, pages, of which repeats, other notifications, naive pages) per team. A page is a trigger,
    repeat or escalation carrying a critical or error alert; warnings and info notices are counted apart."""
    rows = []
    for team in sorted(set(result.pages_by_team) | set(result.naive_by_team) | set(result.other_by_team)):
        rows.append((team, str(result.pages_by_team.get(team, 0)), str(result.repeats_by_team.get(team, 0)),
                     str(result.other_by_team.get(team, 0)), str(result.naive_by_team.get(team, 0))))
    return rows

