"""The deliverer: takes notifications from the outbox and sends them, at least once, in order per alert,
each receiver on its own.

    writer ──enqueue──▶ deliverer thread ──▶ lane "slack-payments" (a thread)  ──▶ Slack
    outbox ──poll─────▶   (routes, polls,  ──▶ lane "pagerduty"      (a thread)  ──▶ PagerDuty
                           records results through the writer, retrying while the store is away)

- New notifications arrive straight from the writer after its commit (no polling delay); the outbox is
  polled every second for what a previous process left pending. Nothing is sent before the first poll has
  loaded every pending row, so a resolve created after a restart cannot overtake a trigger left pending.
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
- Every time decision reads the injected clock (`pm.clock`); only the token bucket waits in real time.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

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

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 60.0
MAX_AGE_S = 24 * 3600.0
POLL_S = 1.0
LANE_TICK_S = 0.25         # a lane waiting for a retry looks at the clock at least this often
STORE_BACKOFF_BASE_S = 0.5   # polls and result records while the store is unavailable
STORE_BACKOFF_CAP_S = 30.0
TEST_MAX_WAIT_S = 10.0       # a receiver test waits at most this long for its rate limit's tokens


class RateLimited(PipemonError):
    """The receiver's rate limit has no room now; retry after `retry_after` seconds."""

    def __init__(self, receiver: str, retry_after: float) -> None:
        super().__init__(f"receiver {receiver!r} is at its rate limit; retry in {retry_after:.1f}s")
        self.retry_after = retry_after


@dataclass
class _Bucket:
    """A token bucket: `rate` messages a second after a burst of `burst` (real, monotonic time)."""

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
            now = self.d.pm.clock.now()
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
            item.next_at = self.d.pm.clock.now() + self.d.backoff_cap
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
                 store_backoff_cap: float = STORE_BACKOFF_CAP_S) -> None:
        self.pm = pm
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
        deadline = time.monotonic() + 5
        for lane in list(self._lanes.values()):
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        # results not stored yet: one last try, queued to the writer, which stops after us and finishes its
        # queue first; a result lost here leaves its row pending: resent after a restart, same idempotency key
        with self._lock:
            self._store_failures, self._store_retry_at = 0, 0.0
        self._flush_records()

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
        """Poll the outbox now (a dispatcher in a cluster: a worker wrote rows this process never saw)."""
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
        next_poll = 0.0
        while not self._stop.is_set():
            try:
                wait = max(0.0, min(next_poll, self._next_record_at()) - time.monotonic())
                try:
                    item = self._inbox.get(timeout=min(wait, self.poll_s))
                except queue.Empty:
                    item = None
                while item is not None:
                    self._route(item, 0, item.time, item.time)
                    try:
                        item = self._inbox.get_nowait()
                    except queue.Empty:
                        item = None
                if time.monotonic() >= next_poll or self._poll_now:
                    self._poll_now = False
                    next_poll = time.monotonic() + self._poll_once()
                self._flush_records()
            except Exception:  # never die: log, breathe, go on
                log.exception("the deliverer loop failed; going on")
                self._stop.wait(1.0)

    def _poll_once(self) -> float:
        """Load pending rows this process does not hold; return the seconds to the next poll."""
        started = time.monotonic()
        try:
            with self.pm.db.connect() as conn:
                ids = store.pending_ids(conn)
                held = self._held()
                new = [i for i in ids if i not in held]
                rows = store.notifications_by_id(conn, new) if new else []
        except Exception as e:  # noqa: BLE001 - any store failure: back off and poll again
            self._poll_failures += 1
            wait = backoff(self._poll_failures, base=self.store_backoff_base, cap=self.store_backoff_cap,
                           jitter=random.uniform(0.5, 1.0))
            (log.warning if self._poll_failures == 1 else log.debug)(
                "polling the outbox failed (%s: %s); retrying in %.1fs", type(e).__name__, e, wait)
            return wait
        if self._poll_failures:
            log.warning("polling the outbox works again after %d failed tries", self._poll_failures)
            self._poll_failures = 0
        for r in rows:
            n = msgspec.json.decode(r.body, type=Notification)
            self._route(msgspec.structs.replace(n, id=r.id), r.attempts, r.created_at, r.next_attempt_at)
        with self._lock:  # an end stored before this poll began can no longer show up as pending
            for i in [i for i, t in self._done.items() if t < started]:
                del self._done[i]
        self._loaded.set()
        return self.poll_s

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
                b = self._buckets[name] = _Bucket(rate, burst, burst)
            return b

    def _attempt(self, lane: _Lane, item: _Item) -> Outcome:
        n = item.n
        receiver = self.receivers[n.receiver]
        targets = len(receiver.targets(n))  # 0: every channel filters it out (skipped, not delivered)
        error: TransportError | None = None
        if targets:
            bucket = self.bucket(n.receiver)
            while (delay := bucket.wait()) > 0:
                if self._stop.wait(min(delay, 0.5)):
                    return Outcome.RETRY
            try:
                receiver.send(n, self.http, skip=item.settled)
            except TransportError as e:
                error = e
                if isinstance(e, DeliveryError):
                    item.settled = tuple(sorted(set(item.settled) | e.settled))
            item.attempts += 1
        now = self.pm.clock.now()
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
                store.mark_failed(conn, nid, attempts, result.value, error or "",
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
            delays = self.bucket(name).reserve(len(notifications), max_wait)
        except ValueError as e:
            raise RateLimited(name, float(e.args[0])) from None
        t0 = time.monotonic()
        for n, delay in zip(notifications, delays):
            time.sleep(max(0.0, delay - (time.monotonic() - t0)))
            receiver.send(n, self.http)
