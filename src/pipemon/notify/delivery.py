"""The deliverer: takes notifications from the outbox and sends them, at least once, in order per receiver.

- New notifications arrive straight from the writer after its commit (no polling delay); the outbox is
  also polled every second for retries and for what a previous process left pending.
- A transient failure (timeout, connection error, 5xx, 429) is retried with exponential backoff and full
  jitter (honouring Retry-After), for up to `max_age`; a permanent one (other 4xx) is not retried.
- Each receiver is rate limited (token bucket) and served by one sender at a time, so its messages keep
  their order; a slow receiver does not hold up the others.
- At-least-once with idempotency: a notification carries a stable key (the webhook's Idempotency-Key) and
  PagerDuty's dedup_key is the alert fingerprint, so a resend after a crash is not a new incident.
- Results are recorded through the writer (the single writer of the store). A receiver that fails
  `threshold` times in a row raises its own alert through the default route; success resolves it.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import msgspec

from pipemon.model import Notification
from pipemon.notify import DeliveryError, Receiver, TransportError
from pipemon.store import alerting as store

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 60.0
MAX_AGE_S = 24 * 3600.0
POLL_S = 1.0


@dataclass
class _Bucket:
    """A token bucket: `rate` messages a second after a burst of `burst`."""

    rate: float
    burst: float
    tokens: float
    at: float = field(default_factory=time.monotonic)

    def wait(self, now: float | None = None) -> float:
        """Take a token and return 0, or return how long to wait for one (taking nothing)."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Deliverer:
    def __init__(self, pm, receivers: dict[str, Receiver], http: httpx.Client | None = None, *,
                 threshold: int = 5, max_age: float = MAX_AGE_S) -> None:
        self.pm = pm
        self.receivers = receivers
        self.http = http or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0))
        self.threshold = threshold
        self.max_age = max_age
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._inflight: set[int] = set()
        self._lock = threading.Lock()
        self._per_receiver: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._buckets: dict[str, _Bucket] = {}
        self._streak: dict[str, int] = defaultdict(int)
        self._settled: dict[int, tuple[str, ...]] = {}
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pipemon-deliver")
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # per receiver: sent, retried (a transient failure), failed (permanent or given up); for /metrics
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: {"sent": 0, "retried": 0, "failed": 0})

    # --- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pipemon-deliverer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._q.put(None)
        if self._thread is not None:
            self._thread.join(5)
        self._pool.shutdown(wait=True, cancel_futures=False)

    def enqueue(self, notifications: list[Notification]) -> None:
        """Called by the writer after a commit: send these now."""
        for n in notifications:
            self._q.put((n, 0, n.time))

    # --- the loop --------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            try:
                item = self._q.get(timeout=max(0.0, next_poll - time.monotonic()))
            except queue.Empty:
                item = None
            if item is not None:
                self._dispatch(*item)
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + POLL_S
                try:
                    self._poll()
                except Exception:  # the store may be briefly unavailable: try again next poll
                    log.exception("polling the outbox failed")

    def _poll(self) -> None:
        now = self.pm.clock.now()
        with self.pm.engine.connect() as conn:
            rows = store.due_notifications(conn, now)
        for r in rows:
            n = msgspec.json.decode(r.body, type=Notification)
            self._dispatch(msgspec.structs.replace(n, id=r.id), r.attempts, r.created_at)

    def _dispatch(self, n: Notification, attempts: int, created: float) -> None:
        with self._lock:
            if n.id in self._inflight:
                return
            self._inflight.add(n.id)
        self._pool.submit(self._deliver, n, attempts, created)

    # --- one notification -------------------------------------------------------------------------------------
    def _deliver(self, n: Notification, attempts: int, created: float) -> None:
        try:
            with self._per_receiver[n.receiver]:
                self._send(n, attempts + 1, created)
        except Exception:  # never let one notification kill a sender thread
            log.exception("delivering notification %s failed unexpectedly", n.id)
            with self._lock:
                self._inflight.discard(n.id)

    def bucket(self, name: str) -> _Bucket:
        """The rate limiter of a receiver (see Receiver.rate_limit)."""
        b = self._buckets.get(name)
        if b is None:
            rate, burst = self.receivers[name].rate_limit
            b = self._buckets[name] = _Bucket(rate, burst, burst)
        return b

    def _send(self, n: Notification, attempts: int, created: float) -> None:
        receiver = self.receivers.get(n.receiver)
        if receiver is None:
            self._record(n, attempts, "dead", f"no receiver named {n.receiver!r} is configured", None)
            return
        bucket = self.bucket(n.receiver)
        while (delay := bucket.wait()) > 0:
            time.sleep(min(delay, 1.0))
        try:
            receiver.send(n, self.http, skip=self._settled.get(n.id, ()))
        except TransportError as e:
            if isinstance(e, DeliveryError):
                self._settled[n.id] = tuple(e.settled)
            now = self.pm.clock.now()
            if e.permanent:
                self._record(n, attempts, "failed", str(e), None)
            elif now - created >= self.max_age:
                self._record(n, attempts, "dead", f"gave up after {attempts} attempts: {e}", None)
            else:
                backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
                wait = max(backoff, e.retry_after or 0.0)
                self.counts[n.receiver]["retried"] += 1
                self._record(n, attempts, "pending", str(e), now + wait)
            self._streak[n.receiver] += 1
            if self._streak[n.receiver] == self.threshold:
                why = str(e)  # `e` is unbound once the except block ends; the call runs later
                self._call(lambda conn, t: self.pm.alerting.receiver_status(conn, n.receiver, True, why, t))
            return
        self._settled.pop(n.id, None)
        self._record(n, attempts, "sent", None, None)
        if self._streak[n.receiver] >= self.threshold:
            self._call(lambda conn, t: self.pm.alerting.receiver_status(conn, n.receiver, False, "", t))
        self._streak[n.receiver] = 0

    def _record(self, n: Notification, attempts: int, status: str, error: str | None, next_at: float | None) -> None:
        if status == "sent":
            self.counts[n.receiver]["sent"] += 1
            fn = lambda conn, t: store.mark_sent(conn, n.id, attempts, t)  # noqa: E731
        else:
            if status != "pending":
                self.counts[n.receiver]["failed"] += 1
                log.warning("notification %s to %s %s: %s", n.id, n.receiver, status, error)
            fn = lambda conn, t: store.mark_failed(conn, n.id, attempts, status, error or "", next_at or t)  # noqa: E731

        fut = self.pm.worker.submit_call(fn)

        def done(_f) -> None:
            with self._lock:
                self._inflight.discard(n.id)
        fut.add_done_callback(done)

    def failing_streak(self, receiver: str) -> int:
        return self._streak.get(receiver, 0)

    def _call(self, fn) -> None:
        self.pm.worker.submit_call(fn)

    # --- one-off sends ------------------------------------------------------------------------------------------
    def send_now(self, n: Notification) -> None:
        """Send synchronously (for `pipemon receivers test`); raises TransportError."""
        receiver = self.receivers.get(n.receiver)
        if receiver is None:
            raise KeyError(n.receiver)
        receiver.send(n, self.http)
