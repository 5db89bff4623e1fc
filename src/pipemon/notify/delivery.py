"""The deliverer: takes notifications from the outbox and sends them, at least once, in order per alert,
each receiver on its own.

    writer ──enqueue──▶ deliverer thread ──▶ lane "slack-payments" (a thread)  ──▶ Slack
    outbox ──claim────▶   (routes, claims, ──▶ lane "pagerduty"      (a thread)  ──▶ PagerDuty
                           records results through the writer, retrying while the store is away)

- Claims (store.alerting.claim): a deliverer sends only rows it has claimed for a lease (`claimed_by`,
  `claimed_until`), renewed while it holds them; a dispatcher that dies mid-send leaves its claim to
  expire, and the row is claimed again and resent with the same idempotency key.
- Embedded (`shared=False`, the one deliverer of the store): new notifications arrive straight from the
  writer after its commit (no polling delay) and the outbox is claimed whole (due or not) through the
  writer, every second, for what a previous process left pending (its claims are released at start: they
  are a dead process's). Nothing is sent before the first claim has loaded every pending row, so a resolve
  created after a restart cannot overtake a trigger left pending.
- Cluster (`shared=True`, several dispatchers on one PostgreSQL): a wake-up (poll_soon, after a worker's
  commit) claims at once on the deliverer thread's own connection, `FOR UPDATE SKIP LOCKED`, due rows only,
  and of each (receiver, group) only the earliest pending row: a group's next notification is claimable
  once the previous one is recorded, whichever dispatcher sent it. A final record claims again at once.
- Isolation: each receiver has its own lane (a thread, a queue, a token bucket), so a receiver that stalls or
  times out holds up only itself.
- Order per alert (rules.pick): a lane sends a notification only when no earlier one for the same alert or
  group is still queued; a trigger waiting for its retry holds back its resolve, never the other alerts.
- A transient failure (timeout, connection error, 5xx, 429) is retried with capped exponential backoff and
  jitter (honouring Retry-After) for up to `max_age`; a permanent one (other 4xx) is not retried. A
  notification that no channel of the receiver wants (a resolve to send_resolved: false) is `skipped`: not
  a delivery, so it neither resets nor extends the receiver's failing streak.
- At-least-once with idempotency: a notification carries a stable key (the webhook's Idempotency-Key) and
  PagerDuty's dedup_key is the alert fingerprint, so a resend after a crash is not a new incident.
- Results are recorded through the writer (the single writer of the store). While the store is unavailable
  a result is kept in memory and recorded again, with capped jittered backoff, until it is stored (a
  record only changes a pending row, so late records are harmless); the notification is not resent
  meanwhile. A crash before that loses only the record: the row is still pending, the notification is
  resent with its idempotency key and the receiver deduplicates it.
- Every time decision (retries and their backoff, give-up age, leases, rate buckets) reads the injected
  clock (`clock=`, else `pm.clock` and real time for the buckets); threads wait in real time, looking at
  the clock again at least every LANE_TICK_S (`kick()` after moving a FakeClock).
"""
from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from pipemon.clock import Clock, WallClock
from pipemon.errors import PipemonError
from pipemon.model import Notification
from pipemon.notify import DeliveryError, Receiver, TransportError
from pipemon.notify.rules import (
    Outcome,
    ReceiverChange,
    backoff,
    outcome,
    pick,
    retry_at,
    streak_after,
)
from pipemon.store import alerting as store
from pipemon.store.db import end_session

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 60.0
MAX_AGE_S = 24 * 3600.0
POLL_S = 1.0
LANE_TICK_S = 0.25         # a lane waiting for a retry looks at the clock at least this often
STORE_BACKOFF_BASE_S = 0.5   # polls and result records while the store is unavailable
STORE_BACKOFF_CAP_S = 30.0
TEST_MAX_WAIT_S = 10.0       # a receiver test waits at most this long for its rate limit's tokens
LEASE_S = 15.0               # a claim's lease, renewed every third of it while held (> the HTTP timeout)
CLAIM_BATCH = 100            # rows one claim takes (shared): small enough that dispatchers share a burst
STORE_CALL_S = 30.0          # the longest a claim waits for the writer (embedded)


class RateLimited(PipemonError):
    """The receiver's rate limit has no room now; retry after `retry_after` seconds."""

    def __init__(self, receiver: str, retry_after: float) -> None:
        super().__init__(f"receiver {receiver!r} is at its rate limit; retry in {retry_after:.1f}s")
        self.retry_after = retry_after


@dataclass
class _Bucket:
    """A token bucket: `rate` messages a second after a burst of `burst` (times: the deliverer's clock)."""

    rate: float
    burst: float
    tokens: float
    at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def wait(self, now: float | None = None) -> float:
        """Take a token and return 0, or return how long to wait for one (taking nothing)."""
        with self.lock:
            self._refill(time.monotonic() if now is None else now)
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate

    def reserve(self, k: int, max_wait: float, now: float | None = None) -> list[float]:
        """Take k tokens now if the first is there and the last comes within max_wait (the bucket may go
        into debt: the lane then waits for it); return each message's delay. Else take nothing and raise
        ValueError carrying the seconds to wait."""
        with self.lock:
            self._refill(time.monotonic() if now is None else now)
            delays = [max(0.0, (i + 1 - self.tokens) / self.rate) for i in range(k)]
            if delays[0] > 0:
                raise ValueError(delays[0])
            if delays[-1] > max_wait:
                raise ValueError(delays[-1] - max_wait)
            self.tokens -= k
            return delays


@dataclass
class _Item:
    """A queued notification (lane-private, mutable)."""

    n: Notification
    attempts: int
    created: float
    next_at: float
    settled: tuple[str, ...] = ()
    fingerprints: frozenset[str] = field(init=False)  # with id, group_key, next_at: a rules.QueuedLike

    def __post_init__(self) -> None:
        self.fingerprints = frozenset(a.fingerprint for a in self.n.alerts)

    @property
    def id(self) -> int:
        return self.n.id

    @property
    def group_key(self) -> str:
        return self.n.group_key


@dataclass
class _Claimed:
    """The answer to a claim submitted to the writer (embedded), back on the deliverer thread."""

    future: Future
    started: float  # monotonic, when it was submitted


@dataclass
class _Record:
    """A write the deliverer needs the store to take, kept until it did."""

    fn: Callable[[Any, float], object]
    what: str
    final: bool = False           # a notification's end: its id is done once this is stored
    future: Future | None = None  # submitted to the writer, not answered yet


class _Lane:
    """One receiver's queue and its sender thread."""

    def __init__(self, d: Deliverer, name: str) -> None:
        self.d = d
        self.name = name
        self.items: dict[int, _Item] = {}
        self.cond = threading.Condition()
        self.streak = 0
        self.changed = False             # items added or changed since the last pick
        self.wake: float | None = None   # when the last pick said something becomes due
        self.thread = threading.Thread(target=self._run, name=f"pipemon-deliver-{name}", daemon=True)

    def add(self, item: _Item) -> None:
        with self.cond:
            if item.id in self.items:
                return
            last = next(reversed(self.items), None)
            self.items[item.id] = item
            # kept in creation order (rare: a poll finds an older row)
            if last is not None and item.id < last:
                self.items = dict(sorted(self.items.items()))
            self.changed = True
            self.cond.notify()

    def kick(self) -> None:
        with self.cond:
            self.changed = True
            self.cond.notify()

    def _run(self) -> None:
        while not self.d._stop.is_set():
            try:
                self._turn()
            except Exception:  # a bug must not end the lane: log, breathe, go on
                log.exception("the delivery lane of receiver %s failed; going on", self.name)
                self.d._stop.wait(1.0)

    def _turn(self) -> None:
        with self.cond:
            if not self.d._loaded.is_set():
                self.cond.wait(POLL_S)
                return
            now = self.d.clock.now()
            if not self.changed and (self.wake is None or now < self.wake):
                # nothing new and nothing due yet: wait, looking at the clock again within a tick (it is
                # injected: a FakeClock moves without telling us)
                self.cond.wait(POLL_S if self.wake is None else min(LANE_TICK_S, max(0.01, self.wake - now)))
                return
            self.changed = False
            item, self.wake = pick(self.items.values(), now)
            if item is None:
                return
        try:
            result = self.d._attempt(self, item)
        except Exception:  # a bug on one notification: push its next attempt forward, serve the others
            log.exception("delivering notification %s to %s failed unexpectedly", item.n.id, self.name)
            item.attempts += 1
            item.next_at = self.d.clock.now() + self.d.backoff_cap
            result = Outcome.RETRY
        with self.cond:
            if result.final:
                self.items.pop(item.n.id, None)
            self.changed = True


class Deliverer:
    def __init__(self, pm, receivers: dict[str, Receiver], http: httpx.Client | None = None, *,
                 threshold: int = 5, max_age: float = MAX_AGE_S, backoff_base: float = BACKOFF_BASE_S,
                 backoff_cap: float = BACKOFF_CAP_S, poll: float = POLL_S,
                 store_backoff_base: float = STORE_BACKOFF_BASE_S,
                 store_backoff_cap: float = STORE_BACKOFF_CAP_S, clock: Clock | None = None,
                 shared: bool = False, lease: float = LEASE_S, batch: int = CLAIM_BATCH) -> None:
        self.pm = pm
        self.clock: Clock = clock or (pm.clock if pm is not None else WallClock())
        # rate buckets pace real sends: an injected clock drives them, else real time (a replay's or a
        # test harness's FakeClock stands still while the lanes send)
        self._pace: Callable[[], float] = clock.now if clock is not None else time.monotonic
        self.shared, self.lease, self.batch = shared, lease, batch
        self.me = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"  # claimed_by: this deliverer, never reused
        self.receivers = receivers
        self.http = http or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0))
        self.threshold = threshold
        self.max_age = max_age
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.poll_s = poll
        self.store_backoff_base, self.store_backoff_cap = store_backoff_base, store_backoff_cap
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._records: dict[tuple[str, object], _Record] = {}  # ("n", id) | ("receiver", name) -> latest
        self._done: dict[int, float] = {}                      # id -> monotonic time its end was stored
        self._loaded = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_failures = 0
        self._poll_now = False        # poll_soon() was called
        self._more = False            # the last claim was full: claim again when the lanes run low
        self._released = False        # embedded: the dead process's claims were given back
        self._conn: Any = None        # shared: the deliverer thread's claim connection
        self._claiming = False        # embedded: a claim is queued to the writer, not answered yet
        self._next_poll = 0.0         # monotonic
        self._store_failures = 0      # records that failed in a row: while > 0, one record probes the store
        self._store_retry_at = 0.0    # monotonic
        # per receiver: sent, retried (a transient failure), failed (permanent or given up), skipped; /metrics
        self.counts: dict[str, dict[str, int]] = defaultdict(
            lambda: {"sent": 0, "retried": 0, "failed": 0, "skipped": 0})

    # --- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pipemon-deliverer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put(None)
        for lane in list(self._lanes.values()):
            lane.kick()
        if self._thread is not None:
            self._thread.join(5)
        self._close_conn()
        deadline = time.monotonic() + 5
        for lane in list(self._lanes.values()):
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        # results not stored yet: one last try, queued to the writer, which stops after us and finishes its
        # queue first; a result lost here leaves its row pending: resent after a restart, same idempotency key
        with self._lock:
            self._store_failures, self._store_retry_at = 0, 0.0
        self._flush_records()
        # then give back what is still held (queued after the records: a standby claims it at once)
        try:
            self.pm.writer.submit_call(lambda conn, _t: store.release_claims(conn, self.me)).result(5)
        except Exception as e:  # noqa: BLE001 - the leases expire by themselves
            log.info("could not give back the claims at stop (%s: %s); they expire within %.0f s",
                     type(e).__name__, e, self.lease)

    def alive(self) -> bool:
        """The deliverer thread and every receiver's lane are running (for /readyz)."""
        if self._thread is None or not self._thread.is_alive():
            return False
        return all(lane.thread.is_alive() for lane in list(self._lanes.values()))

    def reconfigure(self, receivers: dict[str, Receiver], threshold: int) -> None:
        """New receivers (a config reload). A receiver no longer configured stays known, so what is pending
        for it is still delivered; a changed one is used from its next attempt, with its new rate limit."""
        with self._lock:
            for name, r in receivers.items():
                if self.receivers.get(name) != r:
                    self._buckets.pop(name, None)
            self.receivers = {**self.receivers, **receivers}
            self.threshold = threshold

    def enqueue(self, notifications: list[Notification]) -> None:
        """Called by the writer after a commit: send these now."""
        for n in notifications:
            self._inbox.put(n)

    def poll_soon(self) -> None:
        """Claim now (a dispatcher in a cluster: a worker wrote rows this process never saw)."""
        self._poll_now = True
        self._inbox.put(None)

    def kick(self) -> None:
        """Look again now (after a FakeClock moved, in tests and replay)."""
        self._inbox.put(None)
        for lane in list(self._lanes.values()):
            lane.kick()

    @property
    def _inflight(self) -> set[int]:
        """Notifications queued in a lane, or whose result is not stored yet."""
        return self._held(with_done=False)

    def _held(self, with_done: bool = True) -> set[int]:
        """Ids this process holds: queued in a lane, ended but not stored yet, or (with_done) stored since
        the last poll. The lanes are read first: an id leaves its lane only after its result is kept, and
        its result only when the id is done, so no id slips between the reads."""
        ids: set[int] = set()
        for lane in list(self._lanes.values()):
            with lane.cond:
                ids |= set(lane.items)
        with self._lock:
            ids |= {k[1] for k, r in self._records.items() if k[0] == "n" and r.final}  # type: ignore[misc]
            if with_done:
                ids |= set(self._done)
        return ids

    def failing_streak(self, receiver: str) -> int:
        lane = self._lanes.get(receiver)
        return lane.streak if lane else 0

    # --- the deliverer thread: route, poll, record ----------------------------------------------------------
    def _loop(self) -> None:
        next_renew = time.monotonic() + self.lease / 3
        while not self._stop.is_set():
            try:
                wait = max(0.0, min(self._next_poll, self._next_record_at()) - time.monotonic())
                try:
                    item = self._inbox.get(timeout=min(wait, self.poll_s))
                except queue.Empty:
                    item = None
                while item is not None:
                    if isinstance(item, _Claimed):
                        self._claimed(item)
                    else:
                        self._route(item, 0, item.time, item.time)
                    try:
                        item = self._inbox.get_nowait()
                    except queue.Empty:
                        item = None
                if self.shared and time.monotonic() >= next_renew:
                    next_renew = time.monotonic() + self.lease / 3
                    self._renew()
                low = self._more and len(self._inflight) < self.batch // 2
                if (time.monotonic() >= self._next_poll or self._poll_now or low) and not self._claiming:
                    self._poll_now = False
                    self._next_poll = time.monotonic() + self.poll_s
                    self._claim_once()
                self._flush_records()
            except Exception:  # never die: log, breathe, go on
                log.exception("the deliverer loop failed; going on")
                self._stop.wait(1.0)

    def _store_call(self, fn: Callable[[Any, float], Any]) -> Any:
        """Run fn(conn, now), one statement (a claim, a renewal): through the store's single writer (SQLite:
        one writer, one connection), or, when dispatchers share the outbox, on the deliverer thread's own
        connection in autocommit: one round trip, the wake-up's only one before the send."""
        if not self.shared:
            return self.pm.writer.submit_call(fn).result(STORE_CALL_S)
        try:
            if self._conn is None:
                conn = self.pm.db.connect().execution_options(isolation_level="AUTOCOMMIT")
                if conn.dialect.name == "postgresql":
                    # a claim needs no durability (lost in a server crash, its rows are claimable again, as
                    # after an expired lease): its commit does not wait for the WAL flush
                    conn.exec_driver_sql("SET synchronous_commit TO OFF")
                self._conn = conn
            return fn(self._conn, self.clock.now())
        except Exception:
            self._close_conn()  # reconnect on the next call
            raise

    def _close_conn(self) -> None:
        # ended, not pooled: the session's `SET synchronous_commit TO OFF` must not reach other users
        conn, self._conn = self._conn, None
        end_session(conn)

    def _claim_once(self) -> None:
        """Claim what may be sent and route it to the lanes. Shared: at once, on this thread. Embedded:
        through the writer, answered back on this thread (_claimed), so that the writer's queue never holds
        up the notifications it hands over meanwhile."""
        started = time.monotonic()
        now = self.clock.now()
        limit = self.batch if self.shared else 1_000_000
        release = not self.shared and not self._released

        def claim(conn, _t):
            if release:  # the one process of this store: every claim left is a dead process's
                store.release_claims(conn)
            return store.claim(conn, self.me, now, now + self.lease, limit=limit, ordered=self.shared)
        if self.shared:
            fut: Future = Future()
            try:
                fut.set_result(self._store_call(claim))
            except Exception as e:  # noqa: BLE001 - any store failure: back off and claim again
                fut.set_exception(e)
            self._claimed(_Claimed(fut, started))
            return
        self._claiming = True
        try:
            fut = self.pm.writer.submit_call(claim)
        except Exception as e:  # noqa: BLE001 - the writer refuses work while it recovers
            fut = Future()
            fut.set_exception(e)
        fut.add_done_callback(lambda f: self._inbox.put(_Claimed(f, started)))

    def _claimed(self, c: _Claimed) -> None:
        self._claiming = False
        error = c.future.exception()
        if error is not None:
            self._poll_failures += 1
            wait = backoff(self._poll_failures, base=self.store_backoff_base, cap=self.store_backoff_cap,
                           jitter=random.uniform(0.5, 1.0))
            (log.warning if self._poll_failures == 1 else log.debug)(
                "claiming from the outbox failed (%s: %s); retrying in %.1fs", type(error).__name__, error,
                wait)
            self._next_poll = time.monotonic() + wait
            return
        rows = c.future.result()
        self._released = True
        if self._poll_failures:
            log.warning("claiming from the outbox works again after %d failed tries", self._poll_failures)
            self._poll_failures = 0
        self._more = self.shared and len(rows) >= self.batch
        held = self._held()
        for r in rows:
            if r.id in held:
                continue
            n = msgspec.json.decode(r.body, type=Notification)
            self._route(msgspec.structs.replace(n, id=r.id), r.attempts, r.created_at, r.next_attempt_at)
        with self._lock:  # an end stored before this claim began can no longer show up as pending
            for i in [i for i, t in self._done.items() if t < c.started]:
                del self._done[i]
        self._loaded.set()

    def _renew(self) -> None:
        """Extend the lease of what this dispatcher holds; drop from the lanes what another dispatcher
        claimed after our lease expired (the store was away longer than the lease): it sends it now."""
        try:
            ours = self._store_call(lambda conn, now: store.renew_claims(conn, self.me, now + self.lease))
        except Exception as e:  # noqa: BLE001 - the store is away: the claim loop backs off and says so
            log.debug("renewing the claims failed: %s: %s", type(e).__name__, e)
            return
        for lane in list(self._lanes.values()):
            with lane.cond:
                lost = [i for i in lane.items if i not in ours]
                for i in lost:
                    del lane.items[i]
                if lost:
                    log.warning("%d notifications to %s were claimed by another dispatcher after this one's "
                                "lease expired; it sends them", len(lost), lane.name)
                    lane.changed = True

    def _route(self, n: Notification, attempts: int, created: float, next_at: float) -> None:
        if n.id in self._done:
            return
        if n.receiver not in self.receivers:
            self._record_result(n, attempts, Outcome.DEAD, f"no receiver named {n.receiver!r} is configured",
                                None)
            return
        lane = self._lanes.get(n.receiver)
        if lane is None:
            lane = self._lanes[n.receiver] = _Lane(self, n.receiver)
            lane.thread.start()
        lane.add(_Item(n, attempts, created, next_at))

    # --- one attempt (on the receiver's lane) ---------------------------------------------------------------
    def bucket(self, name: str) -> _Bucket:
        """The rate limiter of a receiver (see Receiver.rate_limit)."""
        with self._lock:
            b = self._buckets.get(name)
            if b is None:
                rate, burst = self.receivers[name].rate_limit
                b = self._buckets[name] = _Bucket(rate, burst, burst, at=self._pace())
            return b

    def _attempt(self, lane: _Lane, item: _Item) -> Outcome:
        n = item.n
        receiver = self.receivers[n.receiver]
        targets = len(receiver.targets(n))  # 0: every channel filters it out (skipped, not delivered)
        error: TransportError | None = None
        if targets:
            bucket = self.bucket(n.receiver)
            while (delay := bucket.wait(self._pace())) > 0:
                if self._stop.wait(min(delay, 0.5)):
                    return Outcome.RETRY
            try:
                receiver.send(n, self.http, skip=item.settled)
            except TransportError as e:
                error = e
                if isinstance(e, DeliveryError):
                    item.settled = tuple(sorted(set(item.settled) | e.settled))
            item.attempts += 1
        now = self.clock.now()
        result = outcome(targets=targets, permanent=None if error is None else error.permanent,
                         age=now - item.created, max_age=self.max_age)
        if result is Outcome.RETRY:
            assert error is not None
            item.next_at = retry_at(item.attempts, now, error.retry_after, base=self.backoff_base,
                                    cap=self.backoff_cap, jitter=random.uniform(0.5, 1.0))
        why = None if error is None else (str(error) if result is not Outcome.DEAD
                                           else f"gave up after {item.attempts} attempts: {error}")
        self._record_result(n, item.attempts, result, why, item.next_at)
        lane.streak, change = streak_after(lane.streak, result, self.threshold)
        if change is not None:
            self._record_receiver(n.receiver, change, why or "")
        return result

    # --- records, through the writer, kept until stored -----------------------------------------------------
    def _record_result(self, n: Notification, attempts: int, result: Outcome, error: str | None,
                       next_at: float | None) -> None:
        c = self.counts[n.receiver]
        c[{Outcome.SENT: "sent", Outcome.RETRY: "retried",
           Outcome.SKIPPED: "skipped"}.get(result, "failed")] += 1
        if result in (Outcome.FAILED, Outcome.DEAD):
            log.warning("notification %s to %s %s: %s", n.id, n.receiver, result.value, error)
        nid = n.id
        if result is Outcome.SENT:
            def fn(conn, t):
                store.mark_sent(conn, nid, attempts, t)
        else:
            def fn(conn, t):
                store.mark_failed(conn, nid, attempts, result.status, error or "",
                                  next_at if next_at is not None else t)
        self._keep(("n", nid), _Record(fn, f"the {result.value} result of notification {nid}", result.final))

    def _record_receiver(self, name: str, change: ReceiverChange, why: str) -> None:
        failing = change is ReceiverChange.FAILING

        def fn(conn, t):
            self.pm.alerts.receiver_status(conn, name, failing, why, t)
        self._keep(("receiver", name), _Record(fn, f"receiver {name} {change.value}"))

    def _keep(self, key: tuple[str, object], rec: _Record) -> None:
        with self._lock:
            old = self._records.get(key)
            if old is not None and old.final and not rec.final:
                return  # an end is never replaced by a retry
            self._records[key] = rec
        self._inbox.put(None)  # the deliverer thread submits it now

    def _next_record_at(self) -> float:
        with self._lock:
            if not any(r.future is None for r in self._records.values()):
                return float("inf")
            return self._store_retry_at

    def _flush_records(self) -> None:
        """Submit the records waiting. After a failure, one record at a time probes the store (after a
        capped, jittered backoff) so that an outage costs one failing write per backoff, not one per
        result."""
        now = time.monotonic()
        with self._lock:
            if now < self._store_retry_at:
                return
            waiting = [(k, r) for k, r in self._records.items() if r.future is None]
            if self._store_failures:
                if any(r.future is not None for r in self._records.values()):
                    return  # the probe is out
                waiting = waiting[:1]
            for _, r in waiting:
                r.future = Future()  # claimed: not submitted twice
        for key, rec in waiting:
            try:
                fut = self.pm.writer.submit_call(rec.fn)
            except Exception as e:  # noqa: BLE001 - the writer may refuse work while it recovers
                self._recorded(key, rec, e)
                continue
            fut.add_done_callback(lambda f, key=key, rec=rec: self._recorded(key, rec, f.exception()))

    def _recorded(self, key: tuple[str, object], rec: _Record, error: BaseException | None) -> None:
        with self._lock:
            if error is None:
                if self._records.get(key) is rec:
                    del self._records[key]
                if rec.final and key[0] == "n":
                    self._done[key[1]] = time.monotonic()  # type: ignore[index]
                failures, self._store_failures, self._store_retry_at = self._store_failures, 0, 0.0
            else:
                rec.future = None
                self._store_failures += 1
                failures = self._store_failures
                wait = backoff(failures, base=self.store_backoff_base, cap=self.store_backoff_cap,
                               jitter=random.uniform(0.5, 1.0))
                self._store_retry_at = time.monotonic() + wait
        if error is None:
            if failures:
                log.warning("the store takes the deliverer's results again (after %d failed tries)", failures)
                self._inbox.put(None)  # submit the rest now
            if rec.final and self.shared:  # the group's next notification may be claimable now
                self._poll_now = True
                self._inbox.put(None)
            return
        (log.warning if failures == 1 else log.debug)(
            "storing %s failed (%s: %s); retrying in %.1fs", rec.what, type(error).__name__, error, wait)
        self._inbox.put(None)

    # --- one-off sends --------------------------------------------------------------------------------------
    def send_now(self, notifications: list[Notification], max_wait: float = TEST_MAX_WAIT_S) -> None:
        """Send synchronously (for `pipemon receivers test`), through the receiver's rate limit: the first
        message needs a token now and the last one within `max_wait` (each waits for its own), else
        RateLimited is raised and nothing is sent. Raises TransportError when a send fails."""
        if not notifications:
            return
        name = notifications[0].receiver
        receiver = self.receivers.get(name)
        if receiver is None:
            raise KeyError(name)
        try:
            delays = self.bucket(name).reserve(len(notifications), max_wait, self._pace())
        except ValueError as e:
            raise RateLimited(name, float(e.args[0])) from None
        t0 = time.monotonic()
        for n, delay in zip(notifications, delays):
            time.sleep(max(0.0, delay - (time.monotonic() - t0)))
            receiver.send(n, self.http)
