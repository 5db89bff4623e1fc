"""The single writer: the one thread that changes pipemon's state (its queue, group commit and recovery).

Requests hand their parsed events to `submit()` and wait; the writer drains whatever has queued up
(group commit), and for the whole group in ONE transaction:
  1. drops events already stored (idempotency key), so a client's retry is stored once;
  2. folds the events into pipelines, lineage edges and runs (fold.py), task runs into their parent's;
  3. hands the changed runs to its stages, in order (stages.py: health → alerts);
  4. commits, and only then answers the requests: a 2xx means committed.
One writer means no write-write races on SQLite and no locks around the in-memory state; on
PostgreSQL with several replicas each writer owns a partition of pipelines (see ARCHITECTURE.md).
Between batches the writer ticks the stages with the clock, so lateness is found with no event.

Faults (see `classify`). Every unit of work (a group, a tick, a call) runs in one recovery path:
  - TRANSIENT (the database went away, timed out, or could not serialize): the writer goes `down`, answers
    every request at once with Unavailable (503 + Retry-After), reconnects with capped, jittered backoff,
    reloads its state from the store, and retries the work it held while that work's deadline lasts.
    Nothing acknowledged is lost (a 2xx means committed); unacknowledged work is committed once
    (idempotency keys make a client's retry of an event a duplicate) or answered 503.
  - INPUT (this request's data broke a constraint): that request alone fails with Rejected (422); the
    group's other requests are committed; the state is reloaded once, never in a loop.
  - BUG (anything else): as INPUT, but logged with its traceback and answered as the error it is.
Every request has a deadline (`request_timeout`): a watcher thread answers 503 to any request still
queued past it, also when the writer is stuck on a silent database or has died. Started work gets a fresh
budget that grows with its size (WORK_S_PER_EVENT); past it, it is answered 503 and rolled back before its
commit. A request answered 503 is never committed later behind the client's back.
"""
from __future__ import annotations

import enum
import logging
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from pipemon import admission
from pipemon.access import Caller
from pipemon.clock import Clock
from pipemon.config import Settings
from pipemon.errors import Elsewhere, PipemonError, Rejected, Unavailable
from pipemon.model import Event, Run
from pipemon.store import state as st
from pipemon.store import writes
from pipemon.store.bodies import BodyCodec
from pipemon.writer.fold import Fold, PipelineRec
from pipemon.writer.stages import Stage

log = logging.getLogger(__name__)

MAX_GROUP_EVENTS = 20_000
UNASSIGNED = None
REQUEST_TIMEOUT_S = 10.0   # a request waits this long for the writer at most, then gets 503
# Once started, work gets a fresh budget that grows with its size: a 10,000-event batch on a slow disk must
# not be rolled back and answered 503 on every retry (the budget still ends work on a silent database).
WORK_S_PER_EVENT = 0.002
BACKOFF_BASE_S = 0.25      # reconnect backoff: doubling from here, capped, with jitter ×[0.5, 1]
BACKOFF_CAP_S = 4.0        # capped low: the database's return is noticed within a few seconds
HEARTBEAT = "writer_heartbeat"  # the checkpoints row each tick writes: proof the store is writable


class Fault(enum.Enum):
    TRANSIENT = "transient"  # the database is away, slow or busy: reconnect, reload, retry
    INPUT = "input"          # this request's data cannot be stored: fail it alone (422)
    BUG = "bug"              # anything else: fail it alone, reload, log the traceback


# SQLSTATE classes (the first two characters): what the input caused, and what a retry may cure.
_INPUT_SQLSTATE = ("22", "23", "54")          # data exception, integrity violation, program limit (index row)
_TRANSIENT_SQLSTATE = ("08", "40", "53", "55", "57", "58", "XX")  # connection, rollback (serialization,
# deadlock), resources, lock not available, operator intervention (shutdown, statement timeout), system


def classify(e: BaseException) -> Fault:
    """What a failed unit of work means for the writer (pure: looks at the exception only)."""
    if isinstance(e, Unavailable):
        return Fault.TRANSIENT
    orig = getattr(e, "orig", None) or e
    code = getattr(orig, "sqlstate", None) or ""
    if code[:2] in _INPUT_SQLSTATE:
        return Fault.INPUT
    if code[:2] in _TRANSIENT_SQLSTATE:
        return Fault.TRANSIENT
    if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
        return Fault.TRANSIENT
    if isinstance(e, (sa_exc.IntegrityError, sa_exc.DataError)):
        return Fault.INPUT
    if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                      sa_exc.DisconnectionError, sa_exc.PendingRollbackError, sa_exc.ResourceClosedError)):
        return Fault.TRANSIENT
    mod = type(orig).__module__.split(".")[0]
    name = type(orig).__name__
    if mod in ("psycopg", "sqlite3") and name in ("OperationalError", "InterfaceError"):
        return Fault.TRANSIENT
    if mod in ("psycopg", "sqlite3") and name in ("IntegrityError", "DataError"):
        return Fault.INPUT
    return Fault.BUG


def backoff(attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait before reconnect attempt `attempt` (1, 2, …): capped exponential, jittered."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)) * rng(0.5, 1.0)


@dataclass(frozen=True)
class WriterHealth:
    """What /readyz reports about the writer."""

    alive: bool                 # the thread runs (False also before start and after stop)
    died: str | None            # why the thread ended unexpectedly
    down_for: float | None      # seconds since the database was lost; None while connected
    last_error: str | None      # the last transient error, password-free
    last_write_age: float | None  # seconds since the last committed write (the tick's heartbeat included)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


@dataclass
class _Submission:
    events: list[Event]
    future: Future
    caller: Caller | None = None  # who sent them (admission.py: its team's pipelines only, new ones limited)
    deadline: float = float("inf")  # time.monotonic() after which it is answered 503 (and rolled back)


@dataclass
class _TickRequest:
    future: Future
    deadline: float = float("inf")


@dataclass
class _Call:
    """Work that changes engine state from outside (operator feedback, acks, silences): it runs on
    the writer thread, in a transaction, like everything else that writes."""

    fn: Callable[[Connection, float], object]
    future: Future
    deadline: float = float("inf")


_Item = _Submission | _TickRequest | _Call
_STOP = object()


class _Abandoned(Exception):  # control flow, never seen outside the writer
    """A request of the unit was answered 503 (its deadline passed) before the commit: roll back."""


class Writer(Fold):
    def __init__(self, db: Engine, settings: Settings, clock: Clock, stages: Stage | None = None,
                 tick_interval: float = 1.0, request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.db = db  # SQLAlchemy's engine (the connection pool)
        self.settings = settings
        self.clock = clock
        self.stages = stages  # what follows the fold, in order (stages.py)
        self.tick_interval = tick_interval
        self.request_timeout = request_timeout
        self.pipelines: dict[str, PipelineRec] = {}
        self.by_id: dict[int, PipelineRec] = {}
        self._runs: OrderedDict[tuple[int, str], Run] = OrderedDict()  # least recently used first
        self._runs_bytes = 0  # estimated (run_size), bounded by settings.cache.runs
        self._lineage: set[tuple[int, str, str]] = set()
        self._folded: dict[tuple[int, str], Run] = {}  # (Fold) what the current transaction's fold wrote
        self._created: frozenset[int] = frozenset()
        self.bodies = BodyCodec()  # compresses raw event bodies (store/bodies.py)
        self._touched: dict[int, PipelineRec] = {}   # last_event_at moved; written by the next tick
        self._touched_flushed = 0.0
        self.quota = admission.Quota(settings.limits.new_pipelines_per_minute)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self._held = False  # inside one_transaction(): ingest and tick do not begin or commit their own
        self.listeners: list[Callable[[], None]] = []  # woken after each commit (e.g. the notifier)
        self.stats: dict = {"events": 0, "duplicates": 0, "batches": 0, "failed_batches": 0, "by_source": {},
                            "last_tick_wall": None, "started_wall": time.time(), "outages": 0,
                            "reconnects": 0, "timed_out": 0, "rejected": 0, "abandoned": 0}
        # Recovery state (the writer thread writes it; /readyz and submit() read it).
        self._down_since: float | None = None   # monotonic time the database was lost; None when connected
        self._last_error: str | None = None
        self._died: str | None = None
        self._wrote_at: float | None = None     # monotonic time of the last committed write
        self._retry: list[_Item] = []           # work caught by an outage, retried after reconnecting
        # Requests not yet answered, oldest first: those not started share one timeout (so they are also
        # soonest deadline first); started ones have their work budget. The watcher answers 503 to those
        # past their deadline. The lock orders claiming against expiry.
        self._waiting: OrderedDict[int, _Item] = OrderedDict()
        self._claim_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        # Cluster (cluster/node.py): why this process's writer does not serve now (a standby or api node);
        # while set and the thread is not running, requests are refused at once instead of queued forever.
        self.not_serving: str | None = None
        self.partitions = None  # (Fold.partitions) set by cluster/partitions.py before each start

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._load()
        # a new term (cluster takeover): what ended the last one is over, the state has just loaded
        self._down_since, self._died = None, None
        self._wrote_at = time.monotonic()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="pipemon-writer", daemon=True)
        self._thread.start()
        self._watcher = threading.Thread(target=self._watch, name="pipemon-writer-watch", daemon=True)
        self._watcher.start()

    def stop(self, timeout: float = 10.0) -> None:
        stuck = False
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout)
            stuck = self._thread.is_alive()
            self._thread = None
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(2.0)
            self._watcher = None
        self._expire(float("inf"), "the service is stopping")
        if stuck:  # the thread still holds the connection: leave both alone
            log.error("the writer did not stop within %.0f s; its unsaved state is lost", timeout)
            return
        if self._conn is not None and self._down_since is None:
            try:  # a clean stop saves what is otherwise saved every few seconds
                with self._conn.begin():
                    self._flush_touched(self._conn)
                    if self.stages is not None:
                        self.stages.on_stop(self._conn, self.clock.now())
            except Exception as e:
                log.warning("could not save state on stop: %s", self._describe(e))
        self._close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._died is None

    def health(self) -> WriterHealth:
        now = time.monotonic()
        down = self._down_since
        wrote = self._wrote_at
        return WriterHealth(alive=self.alive(), died=self._died,
                            down_for=None if down is None else now - down, last_error=self._last_error,
                            last_write_age=None if wrote is None else now - wrote)

    def _refusal(self) -> Unavailable | None:
        """Why a new request cannot be taken now (answered at once, not after a timeout), or None."""
        if self._died is not None:
            return Unavailable("the writer has stopped (see /readyz); retry against another instance", 5.0)
        if self._down_since is not None:
            return Unavailable("the database is unavailable; retry", 2.0)
        return None

    def _enqueue(self, item: _Item) -> Future:
        refusal = self._refusal() if self._thread is not None else None
        if self._thread is None and self.not_serving is not None:
            refusal = Elsewhere(self.not_serving, 2.0)
        if refusal is not None:
            item.future.set_exception(refusal)
            return item.future
        item.deadline = time.monotonic() + self.request_timeout
        with self._claim_lock:
            self._waiting[id(item)] = item
        self._q.put(item)
        return item.future

    def submit(self, events: list[Event], caller: Caller | None = None) -> Future:
        """Store events; `caller` (the token that sent them) is checked in the transaction (admission.py):
        the future then fails with Forbidden or TooMany, and nothing of the request is stored."""
        fut: Future = Future()
        if not events:
            fut.set_result(IngestResult(0, 0))
            return fut
        return self._enqueue(_Submission(events, fut, caller))

    def ingest(self, events: list[Event], timeout: float | None = 60.0,
               caller: Caller | None = None) -> IngestResult:
        """Blocking submit, for replay, tests and the CLI; without the thread, it runs in the caller's."""
        if self._thread is None:
            if self._conn is None:
                self._load()
            result = self._process([events], callers=[caller])[0]
            if isinstance(result, PipemonError):
                raise result
            return result
        return self.submit(events, caller).result(timeout)

    def call(self, fn: Callable[[Connection, float], object], timeout: float | None = 60.0) -> object:
        """Run fn(conn, now) on the writer thread inside a transaction; its result or exception comes back."""
        if self._thread is None:
            fut: Future = Future()
            if self._conn is None:
                self._load()
            item = _Call(fn, fut)
            fut.set_running_or_notify_cancel()
            self._run_call(item)
            return fut.result(timeout)
        return self.submit_call(fn).result(timeout)

    def submit_call(self, fn: Callable[[Connection, float], object]) -> Future:
        return self._enqueue(_Call(fn, Future()))

    # --- answering requests ----------------------------------------------------------------------
    def _claim(self, item: _Item) -> bool:
        """The writer takes an item: False when it was cancelled or answered 503 meanwhile (then it is
        never started), or when its deadline has passed (answered 503 here)."""
        with self._claim_lock:
            fut = item.future
            if fut.done():
                self._waiting.pop(id(item), None)
                return False
            if time.monotonic() > item.deadline:
                self._waiting.pop(id(item), None)
                self.stats["timed_out"] += 1
                fut.set_exception(Unavailable("the request waited too long for the writer; retry"))
                return False
            return fut.running() or fut.set_running_or_notify_cancel()

    def _budget(self, group: list[_Submission]) -> None:
        """Started work's deadline: the request timeout again plus time for the group's events."""
        n = sum(len(s.events) for s in group)
        until = time.monotonic() + self.request_timeout + WORK_S_PER_EVENT * n
        with self._claim_lock:
            for s in group:
                s.deadline = max(s.deadline, until)

    def _answer(self, item: _Item, result: object = None, error: BaseException | None = None) -> None:
        with self._claim_lock:
            self._waiting.pop(id(item), None)
            fut = item.future
            try:  # cancelled (also meanwhile, by the caller's thread) or answered 503 at its deadline: nobody
                if error is not None:  # waits for it any more
                    fut.set_exception(error)
                else:
                    fut.set_result(result)
            except InvalidStateError:
                pass

    def _expire(self, now: float, why: str = "") -> None:
        """Answer 503 to requests whose deadline is before `now` (all of them at stop), queued or in work:
        work in progress checks before its commit and rolls back (see `_process`)."""
        with self._claim_lock:
            for key, item in list(self._waiting.items()):
                if item.deadline > now:
                    if item.future.running():
                        continue  # started, within its work budget; later ones may be queued and late
                    break
                del self._waiting[key]
                try:  # the caller may cancel it meanwhile, from its own thread (a consumer stopping)
                    item.future.set_exception(Unavailable(why or self._late_reason()))
                    self.stats["timed_out"] += 1
                except InvalidStateError:
                    pass

    def _late_reason(self) -> str:
        refusal = self._refusal()
        if refusal is not None:
            return str(refusal)
        return "the writer did not get to the request in time (database slow or not answering); retry"

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            try:
                self._expire(time.monotonic())
            except Exception:  # pragma: no cover - the watcher must outlive anything
                log.exception("the writer's watcher failed")

    # --- one unit of work per kind ---------------------------------------------------------------
    def _run_call(self, item: _Call) -> None:
        try:
            conn = self._connection()
            with conn.begin():
                result = item.fn(conn, self.clock.now())
                if item.future.done():
                    raise _Abandoned
        except _Abandoned:
            self._reset()  # the call may have changed in-memory state that is now rolled back
            return
        except (PipemonError, LookupError, ValueError) as e:
            self._answer(item, error=e)  # the call's own answer (not found, bad request …)
            return
        except Exception as e:
            fault = classify(e)
            if self._thread is None:  # inline (tests, CLI): the caller sees what happened
                if fault is not Fault.INPUT:
                    log.exception("a writer call failed")
                self._reset()
                self._answer(item, error=e)
                return
            if fault is Fault.TRANSIENT:
                self._lost(e, [item])
                return
            if fault is Fault.BUG:
                log.exception("a writer call failed")
            self._reset()  # first: the caller, once answered, sees the state as stored
            if fault is Fault.INPUT:
                self.stats["rejected"] += 1
                self._answer(item, error=Rejected(f"the database refused this change: {self._describe(e)}"))
            else:
                self._answer(item, error=e)
            return
        self._committed()
        if self.stages is not None:
            self.stages.after_commit()
        self._answer(item, result)
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
        if self.stages is not None:
            self.stages.maintain(self.db)

    def _begin(self, conn: Connection):
        return nullcontext() if self._held else conn.begin()

    def tick(self, timeout: float | None = 60.0) -> None:
        """Evaluate the clock now (tests and replay move a FakeClock, then tick)."""
        if self._thread is None:
            if self._conn is None:
                self._load()
            self._tick()
            return
        self._enqueue(_TickRequest(Future())).result(timeout)

    # --- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException as e:  # noqa: BLE001 - whatever ends the thread is reported, then it ends
            self._died = f"{type(e).__name__}: {self._describe(e)}"
            log.critical("the writer thread died; /readyz now fails and requests get 503", exc_info=True)
            for item in self._retry:
                self._answer(item, error=Unavailable("the writer has stopped; retry", 5.0))
            self._retry = []
            self._drain(Unavailable("the writer has stopped; retry", 5.0))
            self._expire(float("inf"), "the writer has stopped; retry")
            # not re-raised: logged above, once; the thread ends and /readyz reports it

    def _serve(self) -> None:
        next_tick = time.monotonic()
        while True:
            if self._down_since is not None:
                if not self._recover():
                    return  # stopped while down
                next_tick = time.monotonic()
                continue
            wait = max(0.0, next_tick - time.monotonic())
            try:
                item = self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait()
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if isinstance(item, _TickRequest):
                if self._claim(item):
                    self._tick(item)
                continue
            if isinstance(item, _Call):
                if self._claim(item):
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
            if self._down_since is None and time.monotonic() >= next_tick:
                self._tick()
                next_tick = time.monotonic() + self.tick_interval

    def _drain(self, error: Unavailable) -> bool:
        """Answer every queued request with `error`; True when a stop request was among them."""
        stop = False
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return stop
            if item is _STOP:
                stop = True
            elif self._claim(item):
                self._answer(item, error=error)

    # --- recovery --------------------------------------------------------------------------------
    def _lost(self, e: BaseException, held: list[_Item]) -> None:
        """A transient fault: the database went away (or timed out). Go down; `_recover` brings it back."""
        self._last_error = self._describe(e)
        self._retry.extend(held)
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.stats["outages"] += 1
            log.error("lost the database (%s); answering 503 and reconnecting", self._last_error)
        self._close()

    def _recover(self) -> bool:
        """Reconnect with backoff until the state reloads; meanwhile every new request is answered 503 at
        once. Then retry the held work still within its deadline. False when stopped meanwhile."""
        attempt = 0
        while True:
            attempt += 1
            until = time.monotonic() + backoff(attempt)
            while (left := until - time.monotonic()) > 0:
                try:
                    item = self._q.get(timeout=left)
                except queue.Empty:
                    break
                if item is _STOP:
                    self._fail_retry("the service is stopping")
                    return False
                if self._claim(item):
                    self._answer(item, error=self._refusal() or Unavailable("the database is unavailable"))
            self._drop_expired_retry()
            try:
                self._close()
                self._load()
            except Exception as e:
                self._last_error = self._describe(e)
                self._close()
                level = logging.WARNING if attempt <= 3 or attempt % 20 == 0 else logging.DEBUG
                log.log(level, "reconnect attempt %d failed: %s", attempt, self._last_error)
                continue
            break
        assert self._down_since is not None
        log.warning("the database is back after %.1f s (%d attempts); state reloaded",
                    time.monotonic() - self._down_since, attempt)
        self.stats["reconnects"] += 1
        self._down_since = None
        self._committed()
        held, self._retry = self._retry, []
        subs = [i for i in held if isinstance(i, _Submission)]
        for item in held:
            if isinstance(item, _Call) and self._claim(item):
                self._run_call(item)
            elif isinstance(item, _TickRequest) and self._claim(item):
                self._tick(item)
        if subs:
            self._commit_group(subs)
        return True

    def _drop_expired_retry(self) -> None:
        now = time.monotonic()
        keep = []
        for item in self._retry:
            if item.deadline < now or item.future.done():
                self.stats["timed_out"] += 1
                self._answer(item, error=Unavailable("the database is unavailable; retry"))
            else:
                keep.append(item)
        self._retry = keep

    def _fail_retry(self, why: str) -> None:
        for item in self._retry:
            self._answer(item, error=Unavailable(why))
        self._retry = []

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.db.connect()
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as e:  # a dead connection may fail to close
                log.debug("closing a lost connection: %s", self._describe(e))

    def _committed(self) -> None:
        self._wrote_at = time.monotonic()

    def _describe(self, e: BaseException) -> str:
        """A one-line, password-free account of an error (SQLAlchemy's text holds the SQL and parameters)."""
        orig = getattr(e, "orig", None) or e
        text = (str(orig).strip().splitlines() or [""])[0][:300]
        password = self.db.url.password
        if password:
            text = text.replace(str(password), "***")
        return f"{type(orig).__name__}: {text}" if text else type(orig).__name__

    def _commit_group(self, group: list[_Submission]) -> None:
        group = [s for s in group if self._claim(s)]
        if not group:
            return
        self._budget(group)
        try:
            results = self._process([s.events for s in group], lambda: any(s.future.done() for s in group),
                                    [s.caller for s in group])
        except _Abandoned:
            self.stats["abandoned"] += 1
            self._reset()  # the caches may hold what was rolled back
            rest = [s for s in group if not s.future.done()]
            if rest and self._down_since is None:
                self._commit_group(rest)
            elif rest:
                self._retry.extend(rest)
            return
        except Exception as e:
            self.stats["failed_batches"] += 1
            fault = classify(e)
            if fault is Fault.TRANSIENT:
                self._lost(e, list(group))
                return
            self._reset()  # the caches may hold what was rolled back
            if self._down_since is not None:
                self._retry.extend(group)
                return
            if len(group) > 1:  # one bad request must not fail its neighbours: retry them one by one
                for s in group:
                    self._commit_group([s])
                    if self._down_since is not None:
                        self._retry.extend(x for x in group if not x.future.done() and x not in self._retry)
                        return
                return
            if fault is Fault.INPUT:
                self.stats["rejected"] += 1
                log.warning("the database refused a request: %s", self._describe(e))
                why = f"the database refused this input: {self._describe(e)}"
                self._answer(group[0], error=Rejected(why))
            else:
                log.exception("writing a batch failed")
                self._answer(group[0], error=e)
            return
        self._committed()
        for s, r in zip(group, results):
            if isinstance(r, PipemonError):
                self._answer(s, error=r)
            else:
                self._answer(s, r)
        for fn in self.listeners:
            fn()

    def queue_depth(self) -> int:
        return self._q.qsize()

    def _tick(self, request: _TickRequest | None = None) -> None:
        if self.stages is None:
            if request is not None:
                self._answer(request)
            return
        conn = None
        try:
            conn = self._connection()
            with self._begin(conn):
                self._flush_touched(conn)  # reads see last_event_at within a tick, with no later traffic
                now = self.clock.now()
                self.stages.on_tick(conn, now)
                if self._thread is not None:  # the live writer proves the store writable, for /readyz
                    st.set_checkpoint(conn, HEARTBEAT, 0, now)
        except Exception as e:
            if self._held:
                raise  # the held transaction is lost: its owner must know
            if self._thread is not None and classify(e) is Fault.TRANSIENT:
                self._lost(e, [request] if request is not None else [])
                return
            log.exception("clock evaluation failed")
            self._reset()
            if request is not None:
                self._answer(request, error=e)
            return
        self._committed()
        self.stages.after_commit()
        self.stats["last_tick_wall"] = time.time()
        if request is not None:
            self._answer(request)
        try:
            if not self._held:  # (between transactions only)
                self.stages.maintain(self.db)
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
            self.bodies.load(conn)
            self._declare(conn)
            self._apply_owners(conn)
            if self.stages is not None:
                self.stages.load(conn, self, self.clock.now())

    def _reset(self) -> None:
        """After a failed transaction the caches may hold what was rolled back: reload from the store.
        A reload that fails takes the writer down; `_recover` retries it until it succeeds."""
        self._close()
        try:
            self._load()
        except Exception as e:
            if self._thread is None:
                log.exception("reloading state after a failed batch failed")
                return
            self._lost(e, [])

    # --- one group, one transaction --------------------------------------------------------------
    def _process(self, requests: list[list[Event]], abandoned: Callable[[], bool] | None = None,
                 callers: list[Caller | None] | None = None) -> list[IngestResult | PipemonError]:
        """One group in one transaction; `abandoned()` true just before the commit rolls it back instead
        (a request was answered 503 meanwhile: it must not be stored behind its client's back). A request
        its caller may not make (admission.py) gets its error in place of a result, and stores nothing."""
        now = self.clock.now()
        conn = self._connection()
        admitted = admission.Admitted()
        try:
            with self._begin(conn):
                self._admit(conn, requests, callers, admitted)
                fresh_by_key: dict[str, Event] = {}
                for i, evs in enumerate(requests):
                    if i not in admitted.refused:
                        for ev in evs:
                            fresh_by_key.setdefault(ev.key, ev)
                stored = writes.existing_event_keys(conn, list(fresh_by_key))
                results: list[IngestResult | PipemonError] = []
                seen: set[str] = set()
                for i, evs in enumerate(requests):
                    if i in admitted.refused:
                        results.append(admitted.refused[i])
                        continue
                    acc = dup = 0
                    for ev in evs:
                        if ev.key in stored or ev.key in seen:
                            dup += 1
                        else:
                            seen.add(ev.key)
                            acc += 1
                    results.append(IngestResult(acc, dup))
                fresh = [ev for k, ev in fresh_by_key.items() if k not in stored]
                changes = self._fold(conn, fresh, now, admitted.claims) if fresh else []
                if fresh and self.stages is not None:
                    self.stages.on_changes(conn, changes, fresh, now)
                self._remember(changes)
                if abandoned is not None and abandoned():
                    raise _Abandoned
        except BaseException:
            self.quota.refund(admitted.taken)  # rolled back: the new pipelines were not made
            raise
        finally:
            self._forget()
        by_source = self.stats["by_source"]
        for ev in fresh:
            by_source[ev.source.value] = by_source.get(ev.source.value, 0) + 1
        if self.stages is not None:
            self.stages.after_commit()
        self.stats["batches"] += 1
        self.stats["events"] += sum(r.accepted for r in results if isinstance(r, IngestResult))
        self.stats["duplicates"] += sum(r.duplicates for r in results if isinstance(r, IngestResult))
        return results

    def _admit(self, conn: Connection, requests: list[list[Event]], callers: list[Caller | None] | None,
               into: admission.Admitted) -> admission.Admitted:
        if not callers or all(c is None or (c.team is None and c.token_id is None) for c in callers):
            return into  # auth off (or nobody to check): no query, no cost
        parent_ids = sorted({ev.parent.run_id for evs in requests for ev in evs if ev.parent is not None})
        parents = writes.find_task_parents(conn, parent_ids) if parent_ids else {}

        def lookup(key: str) -> admission.Owned | None:
            rec = self.pipelines.get(key)
            return None if rec is None else admission.Owned(rec.team, rec.event_team)

        def task_root(run_id: str) -> str | None:
            known = parents.get(run_id)
            return self.by_id[known[0]].key if known is not None else None

        return admission.admit(requests, callers, self.settings, lookup, task_root, self.quota,
                               time.monotonic(), into)
