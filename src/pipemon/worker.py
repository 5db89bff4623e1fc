"""The single writer: the one thread that changes pipemon's state.

Requests hand their parsed events to `submit()` and wait; the writer drains whatever has queued up
(group commit), and for the whole group in ONE transaction:
  1. drops events already stored (idempotency key), so a client's retry is stored once;
  2. registers new pipelines and lineage edges;
  3. folds each event into its run (engine/runs.py; order-tolerant), task runs into their parent's;
  4. hands the changed runs to the evaluator (health, detectors, alerts — pure engine code);
  5. writes events, runs and whatever the evaluator decided, commits, and only then answers the
     requests: a 2xx means committed.
One writer means no write-write races on SQLite and no locks around the in-memory state; on
PostgreSQL with several replicas each writer owns a partition of pipelines (see ARCHITECTURE.md).
Between batches the writer ticks the evaluator with the clock, so lateness is found with no event.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.engine import Connection, Engine

from pipemon.clock import Clock
from pipemon.config import Settings
from pipemon.errors import PipemonError
from pipemon.engine import runs as runfold
from pipemon.model import Event, EventType, Run, RunStatus, pipeline_key
from pipemon.store import writes

log = logging.getLogger(__name__)

MAX_GROUP_EVENTS = 20_000
TOUCH_FLUSH_S = 5.0  # on the ingest path; the clock tick (every second) flushes whatever is left
RUN_SIZE = 400  # bytes a cached Run costs beyond its strings: the struct, its key tuple, the dict entry
UNASSIGNED = None


@dataclass
class PipelineRec:
    id: int
    key: str
    namespace: str
    name: str
    team: str | None
    event_team: str | None
    integration: str | None
    first_seen: float
    last_event_at: float
    open_runs: list[str] = field(default_factory=list)  # top-level runs still running, oldest first


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True)
class RunChange:
    """A run as it was before this batch (None when new) and after."""

    pipeline: PipelineRec
    before: Run | None
    after: Run


class Evaluator(Protocol):
    """What the writer asks of the engine, always inside its transaction (implemented by evaluation.py:
    the pure engine plus the store writes of what it decided)."""

    def load(self, conn: Connection, worker: Worker, now: float) -> None: ...

    def on_changes(self, conn: Connection, changes: list[RunChange], events: list[Event], now: float) -> None: ...

    def on_tick(self, conn: Connection, now: float) -> None: ...

    def on_stop(self, conn: Connection, now: float) -> None: ...

    def maintain(self, engine: Engine) -> None: ...

    def after_commit(self) -> None: ...


@dataclass
class _Submission:
    events: list[Event]
    future: Future


@dataclass
class _TickRequest:
    future: Future


@dataclass
class _Call:
    """Work that changes engine state from outside (operator feedback, acks, silences): it runs on
    the writer thread, in a transaction, like everything else that writes."""

    fn: Callable[[Connection, float], object]
    future: Future


_STOP = object()


class Worker:
    def __init__(self, engine: Engine, settings: Settings, clock: Clock, evaluator: Evaluator | None = None,
                 tick_interval: float = 1.0) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.evaluator = evaluator
        self.tick_interval = tick_interval
        self.pipelines: dict[str, PipelineRec] = {}
        self.by_id: dict[int, PipelineRec] = {}
        self._runs: OrderedDict[tuple[int, str], Run] = OrderedDict()  # least recently used first
        self._runs_bytes = 0  # estimated (run_size), bounded by settings.cache.runs
        self._lineage: set[tuple[int, str, str]] = set()
        self._touched: dict[int, PipelineRec] = {}   # last_event_at moved; written by the next tick
        self._touched_flushed = 0.0
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self._held = False  # inside one_transaction(): ingest and tick do not begin or commit their own
        self.listeners: list[Callable[[], None]] = []  # woken after each commit (e.g. the notifier)
        self.stats: dict = {"events": 0, "duplicates": 0, "batches": 0, "failed_batches": 0, "by_source": {},
                            "last_tick_wall": None, "started_wall": time.time()}

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._load()
        self._thread = threading.Thread(target=self._loop, name="pipemon-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        if self._conn is not None:
            try:  # a clean stop saves what is otherwise saved every few seconds
                with self._conn.begin():
                    self._flush_touched(self._conn)
                    if self.evaluator is not None:
                        self.evaluator.on_stop(self._conn, self.clock.now())
            except Exception:
                log.warning("could not save state on stop", exc_info=True)
            self._conn.close()
            self._conn = None

    def submit(self, events: list[Event]) -> Future:
        fut: Future = Future()
        if not events:
            fut.set_result(IngestResult(0, 0))
        else:
            self._q.put(_Submission(events, fut))
        return fut

    def ingest(self, events: list[Event], timeout: float | None = 60.0) -> IngestResult:
        """Blocking submit, for replay, tests and the CLI; without the thread, it runs in the caller's."""
        if self._thread is None:
            if self._conn is None:
                self._load()
            return self._process([events])[0]
        return self.submit(events).result(timeout)

    def call(self, fn: Callable[[Connection, float], object], timeout: float | None = 60.0) -> object:
        """Run fn(conn, now) on the writer thread inside a transaction; its result or exception comes back."""
        fut: Future = Future()
        if self._thread is None:
            if self._conn is None:
                self._load()
            self._run_call(_Call(fn, fut))
        else:
            self._q.put(_Call(fn, fut))
        return fut.result(timeout)

    def submit_call(self, fn: Callable[[Connection, float], object]) -> Future:
        fut: Future = Future()
        self._q.put(_Call(fn, fut))
        return fut

    def _run_call(self, item: _Call) -> None:
        conn = self._connection()
        try:
            with conn.begin():
                result = item.fn(conn, self.clock.now())
        except Exception as e:
            if not isinstance(e, (PipemonError, LookupError, ValueError)):
                log.exception("a writer call failed")
                self._reset()
            item.future.set_exception(e)
            return
        if self.evaluator is not None:
            self.evaluator.after_commit()
        item.future.set_result(result)
        for fn in self.listeners:
            fn()

    @contextmanager
    def one_transaction(self) -> Iterator[None]:
        """Replay only (no writer thread): the ingests and ticks inside share one transaction, committed at
        the end. A replay keeps nothing through a crash, and per-minute commits were a sixth of its time."""
        if self._thread is not None:
            raise RuntimeError("one_transaction() is for the inline writer (replay), not the live thread")
        if self._conn is None:
            self._load()
        with self._connection().begin():
            self._held = True
            try:
                yield
            finally:
                self._held = False
        if self.evaluator is not None:
            self.evaluator.maintain(self.engine)

    def _begin(self, conn: Connection):
        return nullcontext() if self._held else conn.begin()

    def tick(self, timeout: float | None = 60.0) -> None:
        """Evaluate the clock now (tests and replay move a FakeClock, then tick)."""
        if self._thread is None:
            if self._conn is None:
                self._load()
            self._tick()
            return
        fut: Future = Future()
        self._q.put(_TickRequest(fut))
        fut.result(timeout)

    # --- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_tick = time.monotonic()
        while True:
            wait = max(0.0, next_tick - time.monotonic())
            try:
                item = self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait()
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if isinstance(item, _TickRequest):
                self._tick()
                item.future.set_result(None)
                continue
            if isinstance(item, _Call):
                self._run_call(item)
                continue
            if item is not None:
                group = [item]
                n = len(item.events)
                while n < MAX_GROUP_EVENTS:
                    try:
                        nxt = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP or isinstance(nxt, (_TickRequest, _Call)):
                        self._q.put(nxt)  # handled on the next turn, after this group
                        break
                    group.append(nxt)
                    n += len(nxt.events)
                self._commit_group(group)
            if time.monotonic() >= next_tick:
                self._tick()
                next_tick = time.monotonic() + self.tick_interval

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect()
        return self._conn

    def _commit_group(self, group: list[_Submission]) -> None:
        try:
            results = self._process([s.events for s in group])
        except Exception as e:
            self.stats["failed_batches"] += 1
            self._reset()
            if len(group) > 1:  # one bad request must not fail its neighbours: retry them one by one
                for s in group:
                    self._commit_group([s])
                return
            log.exception("writing a batch failed")
            group[0].future.set_exception(e)
            return
        for s, r in zip(group, results):
            s.future.set_result(r)
        for fn in self.listeners:
            fn()

    def queue_depth(self) -> int:
        return self._q.qsize()

    def _tick(self) -> None:
        if self.evaluator is None:
            return
        conn = self._connection()
        try:
            with self._begin(conn):
                self._flush_touched(conn)  # reads see last_event_at within a tick, with no later traffic
                self.evaluator.on_tick(conn, self.clock.now())
        except Exception:
            if self._held:
                raise  # the held transaction is lost: its owner must know
            log.exception("clock evaluation failed")
            self._reset()
            return
        self.evaluator.after_commit()
        self.stats["last_tick_wall"] = time.time()
        try:
            if not self._held:  # (between transactions only)
                self.evaluator.maintain(self.engine)
        except Exception:  # housekeeping must never stop the writer
            log.exception("store maintenance failed")
        for fn in self.listeners:
            fn()

    # --- state -----------------------------------------------------------------------------------
    def _load(self) -> None:
        conn = self._connection()
        with conn.begin():
            self.pipelines.clear()
            self.by_id.clear()
            for r in writes.load_pipelines(conn):
                rec = PipelineRec(r.id, r.key, r.namespace, r.name, r.team, r.event_team, r.integration,
                                  r.first_seen, r.last_event_at)
                self.pipelines[r.key] = rec
                self.by_id[r.id] = rec
            self._runs.clear()
            self._runs_bytes = 0
            self._touched.clear()
            for r in writes.open_runs(conn):
                rec = self.by_id[r.pipeline_id]
                self._cache_put((r.pipeline_id, r.run_id), writes.run_from_row(rec.key, r))
                if r.parent_run_id is None:
                    rec.open_runs.append(r.run_id)
            self._lineage = {(r.pipeline_id, r.dataset, r.role) for r in writes.load_lineage(conn)}
            self._declare(conn)
            if self.evaluator is not None:
                self.evaluator.load(conn, self, self.clock.now())

    def _declare(self, conn: Connection) -> None:
        """Pipelines the config names exactly exist before their first event, so a pipeline that never
        ran can still be late."""
        now = self.clock.now()
        for rule in self.settings.pipelines:
            key = rule.match
            if any(c in key for c in "*?[") or key in self.pipelines or "/" not in key:
                continue
            ns, _, name = key.rpartition("/")
            row = {"key": key, "namespace": ns, "name": name, "team": rule.team, "event_team": None,
                   "integration": None, "first_seen": now, "last_event_at": now}
            rec = PipelineRec(writes.insert_pipeline(conn, row), key, ns, name, rule.team, None, None, now, now)
            self.pipelines[key] = rec
            self.by_id[rec.id] = rec

    def lineage_edges(self) -> list[tuple[int, str, str]]:
        return list(self._lineage)

    def _reset(self) -> None:
        """After a failed transaction the caches may hold what was rolled back: reload from the store."""
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:  # pragma: no cover - a dead connection may fail to close
            pass
        self._conn = None
        try:
            self._load()
        except Exception:
            log.exception("reloading state after a failed batch failed")

    def _cache_put(self, k: tuple[int, str], run: Run) -> None:
        """Keep a run, least recently used out first, within settings.cache.runs bytes (estimated)."""
        old = self._runs.get(k)
        if old is not None:
            self._runs_bytes -= run_size(old)
        self._runs[k] = run
        self._runs.move_to_end(k)
        self._runs_bytes += run_size(run)
        limit = self.settings.cache.runs
        while self._runs_bytes > limit and self._runs:
            _, gone = self._runs.popitem(last=False)
            self._runs_bytes -= run_size(gone)

    def _flush_touched(self, conn: Connection) -> None:
        """Write the pipelines whose last_event_at (or team, integration) moved since the last flush."""
        if self._touched:
            writes.update_pipelines(conn, [(r.team, r.event_team, r.integration, r.last_event_at, r.id)
                                           for r in self._touched.values()])
            self._touched.clear()
        self._touched_flushed = time.monotonic()

    # --- one group, one transaction --------------------------------------------------------------
    def _process(self, requests: list[list[Event]]) -> list[IngestResult]:
        now = self.clock.now()
        conn = self._connection()
        with self._begin(conn):
            fresh_by_key: dict[str, Event] = {}
            for evs in requests:
                for ev in evs:
                    fresh_by_key.setdefault(ev.key, ev)
            stored = writes.existing_event_keys(conn, list(fresh_by_key))
            results = []
            seen: set[str] = set()
            for evs in requests:
                acc = dup = 0
                for ev in evs:
                    if ev.key in stored or ev.key in seen:
                        dup += 1
                    else:
                        seen.add(ev.key)
                        acc += 1
                results.append(IngestResult(acc, dup))
            fresh = [ev for k, ev in fresh_by_key.items() if k not in stored]
            if fresh:
                self._apply(conn, fresh, now)
        by_source = self.stats["by_source"]
        for ev in fresh:
            by_source[ev.source.value] = by_source.get(ev.source.value, 0) + 1
        if self.evaluator is not None:
            self.evaluator.after_commit()
        self.stats["batches"] += 1
        self.stats["events"] += sum(r.accepted for r in results)
        self.stats["duplicates"] += sum(r.duplicates for r in results)
        return results

    def _pipeline(self, conn: Connection, ev: Event, key: str, namespace: str, name: str) -> PipelineRec:
        rec = self.pipelines.get(key)
        if rec is None:
            rule = self.settings.rule_for(key)
            team = rule.team if rule and rule.team else None
            row = {"key": key, "namespace": namespace, "name": name, "team": team, "event_team": None,
                   "integration": None, "first_seen": ev.time, "last_event_at": ev.time}
            rec = PipelineRec(writes.insert_pipeline(conn, row), key, namespace, name, team, None, None,
                              ev.time, ev.time)
            self.pipelines[key] = rec
            self.by_id[rec.id] = rec
        return rec

    def _apply(self, conn: Connection, fresh: list[Event], now: float) -> None:
        dirty: dict[int, PipelineRec] = {}
        event_rows = []
        lineage_rows = []
        before: dict[tuple[int, str], Run | None] = {}
        work: dict[tuple[int, str], Run] = {}
        recs: dict[tuple[int, str], PipelineRec] = {}
        parents_to_roll: set[tuple[int, str]] = set()

        # Where does each event land? (pipeline, run) — a task lands in its root pipeline's run tree.
        parent_ids = sorted({ev.parent.run_id for ev in fresh if ev.parent is not None})
        known_parents = writes.find_task_parents(conn, parent_ids) if parent_ids else {}
        targets = []
        for ev in fresh:
            if ev.parent is None:
                rec = self._pipeline(conn, ev, ev.pipeline, ev.namespace, ev.name)
                self._touch(rec, ev, dirty)
                targets.append((rec, ev.run_id, None, None))
                continue
            p = ev.parent
            known = known_parents.get(p.run_id)
            if known is not None:
                rec = self.by_id[known[0]]  # the parent run exists: its tree, whatever the root says
            else:
                top = ev.root or p
                rec = self._pipeline(conn, ev, pipeline_key(top.namespace, top.name), top.namespace, top.name)
                known_parents[p.run_id] = (rec.id, None if top.run_id == p.run_id else top.run_id)
            self._touch(rec, ev, dirty, own_team=False)
            targets.append((rec, ev.run_id, p.run_id, ev.pipeline))

        wanted = set()
        for rec, run_id, parent_id, _job in targets:
            if run_id:
                wanted.add((rec.id, run_id))
            if parent_id is not None:
                wanted.add((rec.id, parent_id))
                grand = known_parents[parent_id][1]
                if grand is not None:
                    wanted.add((rec.id, grand))
        missing = [k for k in wanted if k not in self._runs]
        if missing:
            for k, row in writes.load_runs(conn, missing).items():
                self._cache_put(k, writes.run_from_row(self.by_id[k[0]].key, row))

        def ensure_placeholder(rec: PipelineRec, run_id: str, at: float, parent: str | None, job: str | None):
            k = (rec.id, run_id)
            if k not in work and k not in self._runs:
                work[k] = runfold.placeholder(rec.key, run_id, at, parent, job)
                before[k] = None
                recs[k] = rec
            parents_to_roll.add(k)

        for ev, (rec, run_id, parent_id, job) in zip(fresh, targets):
            event_rows.append((ev.key, rec.id, ev.run_id, ev.type.value, ev.source.value, ev.time, now, ev.raw))
            for ds in ev.inputs:
                self._edge(rec.id, ds, "in", now, lineage_rows)
            for ds in ev.outputs:
                self._edge(rec.id, ds, "out", now, lineage_rows)
            if not run_id:
                if ev.type is EventType.HEARTBEAT:
                    continue  # a pipeline-level event (OpenLineage JobEvent, heartbeat ping)
                run_id = rec.open_runs[-1] if rec.open_runs else str(uuid.uuid4())
            if parent_id is not None:
                assert ev.parent is not None
                grand = known_parents[parent_id][1]
                if grand is not None:  # nested: the parent is a task of the root run
                    ensure_placeholder(rec, grand, ev.time, None, None)
                ensure_placeholder(rec, parent_id, ev.time, grand,
                                   pipeline_key(ev.parent.namespace, ev.parent.name) if grand else None)
            k = (rec.id, run_id)
            cur = work.get(k) or self._runs.get(k)
            if k not in before:
                before[k] = cur
            new = runfold.apply(cur, ev, rec.key, run_id, parent_id, job)
            work[k] = new
            recs[k] = rec
            if new.parent_run_id is None:
                self._track_open(rec, run_id, new)

        children: dict[tuple[int, str], list[Run]] = {}
        if parents_to_roll:
            for k2, r2 in work.items():
                if r2.parent_run_id is not None:
                    children.setdefault((k2[0], r2.parent_run_id), []).append(r2)
        for pk in parents_to_roll:
            parent = work.get(pk) or self._runs.get(pk)
            if parent is None or parent.own_events:
                continue
            rec = recs.setdefault(pk, self.by_id[pk[0]])
            tasks = {r.run_id: writes.run_from_row(rec.key, r) for r in writes.load_tasks(conn, pk[0], pk[1])}
            for r2 in children.get(pk, ()):
                tasks[r2.run_id] = r2
            rolled = runfold.rollup(parent, tasks.values())
            if pk not in before:
                before[pk] = parent
            work[pk] = rolled
            if rolled.parent_run_id is None:
                self._track_open(rec, pk[1], rolled)

        inserts, updates = [], []
        for k, run in work.items():
            (updates if before.get(k) is not None else inserts).append((k[0], run))
        writes.insert_events(conn, event_rows)
        writes.insert_runs(conn, inserts)
        writes.update_runs(conn, updates)
        writes.insert_lineage(conn, lineage_rows)
        if dirty or time.monotonic() - self._touched_flushed >= TOUCH_FLUSH_S:
            # last_event_at alone is flushed every few seconds, not per transaction: it only informs reads
            self._touched.update(dirty)
            self._flush_touched(conn)
        if self.evaluator is not None:
            changes = [RunChange(recs[k], before.get(k), run) for k, run in work.items()]
            self.evaluator.on_changes(conn, changes, fresh, now)
        for k, run in work.items():
            self._cache_put(k, run)

    def _touch(self, rec: PipelineRec, ev: Event, dirty: dict[int, PipelineRec], own_team: bool = True) -> None:
        changed = False
        if ev.time > rec.last_event_at:
            rec.last_event_at = ev.time
            self._touched[rec.id] = rec
        if own_team and ev.team and ev.team != rec.event_team:
            rec.event_team = ev.team
            rule = self.settings.rule_for(rec.key)
            rec.team = rule.team if rule and rule.team else ev.team
            changed = True
        if own_team and ev.integration and ev.integration != rec.integration:
            rec.integration = ev.integration
            changed = True
        if changed:
            dirty[rec.id] = rec

    def _edge(self, pid: int, dataset: str, role: str, now: float, rows: list[dict]) -> None:
        k = (pid, dataset, role)
        if k not in self._lineage:
            self._lineage.add(k)
            rows.append({"pipeline_id": pid, "dataset": dataset, "role": role, "last_seen": now})

    @staticmethod
    def _track_open(rec: PipelineRec, run_id: str, run: Run) -> None:
        if run.status is RunStatus.RUNNING:
            if run_id not in rec.open_runs:
                rec.open_runs.append(run_id)
        elif run_id in rec.open_runs:
            rec.open_runs.remove(run_id)


def run_size(run: Run) -> int:
    """A cheap estimate of the memory a cached run holds: a fixed part plus its own strings and metrics
    (the pipeline key is shared with PipelineRec and not counted)."""
    n = RUN_SIZE + len(run.run_id)
    for t in (run.error_message, run.error_type, run.log_excerpt, run.parent_run_id, run.job):
        if t:
            n += 49 + len(t)
    if run.metrics:
        n += 64 + 100 * len(run.metrics)
    return n
