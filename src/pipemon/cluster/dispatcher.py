"""The dispatcher role: deliver the outbox.

The leading dispatcher (leader.py, lock `{prefix}:dispatcher`) runs the Deliverer (notify/delivery.py) with
its lanes, order rules and retries, polling the outbox; a worker's commit that wrote notifications
publishes `{prefix}.outbox` on NATS, which makes the dispatcher poll at once (no polling delay). One
dispatcher sends at a time, so two never send the same notification; a dispatcher killed mid-send leaves
its row pending, and the next leader resends it with the same idempotency key (webhook Idempotency-Key,
PagerDuty dedup_key = the alert's fingerprint), which the receiver deduplicates.

A receiver that keeps failing is logged here; opening its `receiver_failing` alert needs the worker's
engine state (TODO: forward the change to the leading worker over NATS).
"""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from pipemon.notify import build_receivers
from pipemon.notify.delivery import Deliverer

log = logging.getLogger(__name__)


class _ReceiverStatusLog:
    """Stands in for the engine's alerting on a dispatcher: says what it would raise."""

    external_url = None

    def receiver_status(self, conn, receiver: str, failing: bool, error: str, now: float) -> None:
        if failing:
            log.error("receiver %s keeps failing: %s", receiver, error)
        else:
            log.warning("receiver %s works again", receiver)


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
        self.alerts = _ReceiverStatusLog()


def new_deliverer(pm) -> Deliverer:
    """A fresh Deliverer for a new term as leader (a Deliverer is never restarted)."""
    return Deliverer(_DispatchView(pm), build_receivers(pm.settings.receivers),
                     threshold=pm.settings.alerting.receiver_failure_threshold)
