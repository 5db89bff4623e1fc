"""The dispatcher role: deliver the outbox.

Every dispatcher node runs a Deliverer (notify/delivery.py: lanes, order rules, retries, rate buckets) in
shared mode: it sends only rows it claimed (`SELECT … FOR UPDATE SKIP LOCKED`, a lease renewed while held),
so two dispatchers never send the same notification, and of each (receiver, group) only the earliest
pending row is claimable, so a group's notifications go out in creation order whichever dispatcher sends
them. A worker's commit that wrote notifications publishes `{prefix}.outbox` on NATS, which makes every
dispatcher claim at once (no polling delay; they skip each other's rows). A dispatcher killed mid-send
leaves its claim to expire (LEASE_S); another claims the row and resends it with the same idempotency key
(webhook Idempotency-Key, PagerDuty dedup_key = the alert's fingerprint), which the receiver deduplicates.

A receiver that keeps failing (or works again) is reported over NATS to the worker keeping its
`receiver_failing` alert (cluster/relay.py), which opens (or resolves) it; sent again until one took it.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from pipemon.cluster.relay import ReceiverStatus
from pipemon.errors import Unavailable
from pipemon.notify import build_receivers
from pipemon.notify.delivery import Deliverer

log = logging.getLogger(__name__)


class _ReceiverStatusRelay:
    """Stands in for the engine's alerting on a dispatcher: a receiver's status goes to the worker keeping
    its alert, apart from the deliverer's result records (a worker away must not hold those up): the latest
    status of each receiver is kept here and sent until a worker took it (receiver_status is idempotent)."""

    external_url = None
    RETRY_S = 2.0

    def __init__(self, node) -> None:
        self.node = node
        self._pending: dict[str, ReceiverStatus] = {}
        self._lock = threading.Lock()
        self._task: asyncio.Task | None = None

    def receiver_status(self, conn, receiver: str, failing: bool, error: str, now: float) -> None:
        """Called on the records thread; the NATS client lives on the node's event loop."""
        if failing:
            log.error("receiver %s keeps failing: %s", receiver, error)
        else:
            log.warning("receiver %s works again", receiver)
        if self.node is None:
            return
        with self._lock:
            self._pending[receiver] = ReceiverStatus(receiver, failing, error)
        loop = self.node.loop
        if loop is not None:
            loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send_pending())

    async def _send_pending(self) -> None:
        while True:
            with self._lock:
                pending = list(self._pending.values())
            if not pending:
                return
            for st in pending:
                try:
                    await self.node.relay.report_receiver(st)
                except Unavailable as e:
                    log.warning("receiver %s's status not taken yet (%s); again in %.0f s", st.receiver, e,
                                self.RETRY_S)
                    continue
                with self._lock:
                    if self._pending.get(st.receiver) is st:  # not replaced by newer news meanwhile
                        del self._pending[st.receiver]
            with self._lock:
                left = bool(self._pending)
            if left:
                await asyncio.sleep(self.RETRY_S)


class _Records:
    """The Deliverer's result records (mark sent / failed: one row each), written in a transaction of their
    own on one thread: a dispatcher holds no engine state, so it needs no writer."""

    def __init__(self, engine, clock) -> None:
        self.engine, self.clock = engine, clock
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pipemon-dispatch-records")

    def submit_call(self, fn) -> Future:
        def run():
            with self.engine.begin() as conn:
                return fn(conn, self.clock.now())
        return self._pool.submit(run)


class _DispatchView:
    """What the Deliverer uses of a Pipemon, on a node without the engine."""

    def __init__(self, pm) -> None:
        self.db, self.clock, self.settings = pm.db, pm.clock, pm.settings
        self.writer = _Records(pm.db, pm.clock)
        self.alerts = _ReceiverStatusRelay(getattr(pm, "node", None))  # None: a bare deliverer (tests)


def new_deliverer(pm, **kw) -> Deliverer:
    """A Deliverer sharing the outbox with the other dispatchers (a Deliverer is never restarted)."""
    return Deliverer(_DispatchView(pm), build_receivers(pm.settings.receivers),
                     threshold=pm.settings.alerting.receiver_failure_threshold, shared=True, **kw)
