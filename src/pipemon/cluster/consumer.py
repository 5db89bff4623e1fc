"""The worker role: consume the event log into the store.

While this node leads the `worker` lock (leader.py), one task per partition pulls that partition's durable
consumer, hands each message's events to the writer (writer/: dedup, fold, health, alerts, one
transaction per group) and acks a message only after the writer committed it. A message whose events are
already stored (a redelivery after a crash between commit and ack) is committed as duplicates: nothing
changes. The database away: the message is nak'ed with a delay and comes back, so nothing acknowledged by
an api node is lost while PostgreSQL is down; the workers catch up when it returns.

A pull returns as soon as one message is there (`_pull`): a fetch of a batch (nats-py's `fetch(n)`, n > 1)
may instead wait for the rest of the batch until its timeout, which cost a lone FAIL up to FETCH_WAIT_S.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

import msgspec

from pipemon.errors import Forbidden, Rejected, TooMany, Unavailable
from pipemon.log import PARTITIONS, caller_of
from pipemon.log.nats import Names, NatsLog, decode

log = logging.getLogger(__name__)
# Per-message hop times (benchmarks/cluster.py turns it on): stored in the log, pulled, committed, acked.
trace = logging.getLogger("pipemon.trace")

FETCH = 16              # messages per pull (each holds up to one request's events of the partition)
FETCH_WAIT_S = 1.0      # a pull waits this long for a first message, then asks again
DRAIN_WAIT_S = 0.05     # more messages said to be pending (a backlog) come within this, or are pulled next
STOP_WAIT_S = 5.0       # the longest stop() waits for the partition tasks
ACK_WAIT_S = 10.0       # a message not acked within this is redelivered (its worker died)
RETRY_DELAY_S = 2.0     # the database is away: the message comes back after this
# A backlog (a takeover, the database back) queues many messages at once: the writer must commit them
# before their deadline, or it rolls back and reloads. The log, not an HTTP client, waits here.
WRITER_TIMEOUT_S = 120.0
LAG_EVERY_S = 2.0


class Consumer:
    def __init__(self, pm, bus: NatsLog, names: Names) -> None:
        self.pm, self.bus, self.names = pm, bus, names
        self.lag: dict[int, int] = {}     # partition -> messages not yet acked (pending + in flight)
        self.consumed = 0                 # messages acked by this node
        self.refused = 0                  # messages whose token may not write their pipelines
        self._tasks: list[asyncio.Task] = []
        self._subs: list = []  # the pull subscriptions, dropped at stop (a worker restarts on new partitions)
        self._term = 0  # bumped by stop(): a task of an older term ends at its next turn

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self, partitions: Iterable[int] | None = None) -> None:
        """Pull the given partitions (all by default: the one leading worker; several active workers each
        pull the partitions they own, cluster/partitions.py)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        self.pm.writer.request_timeout = WRITER_TIMEOUT_S

        js = self.bus.js
        assert js is not None
        pulled = list(range(PARTITIONS)) if partitions is None else sorted(partitions)
        for n in pulled:  # kept as made, so that stop() also ends those of a failed start
            cfg = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                 ack_wait=ACK_WAIT_S, max_ack_pending=FETCH * 4, max_deliver=-1)
            self._subs.append(await js.pull_subscribe(self.names.subject(n), durable=self.names.consumer(n),
                                                      stream=self.names.stream, config=cfg))
        self._tasks = [asyncio.create_task(self._partition(n, sub, self._term))
                       for n, sub in zip(pulled, self._subs)]

    async def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """Cancel the partition tasks and wait at most `timeout` for them. A task in nats-py's fetch can
        swallow its cancellation (Python 3.11's wait_for, when a message lands with the cancel: a third of
        the time on a busy stream), even twice; the old `wait_for(stop(), 5)` then waited past its
        timeout, forever, and the node never stepped down nor led again (issue 12). Here the wait is
        bounded, and such a task sees its term ended at its next turn."""
        self._term += 1
        tasks, self._tasks = self._tasks, []
        subs, self._subs = self._subs, []
        for t in tasks:
            t.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=timeout)
            for t in stuck:
                t.cancel()  # it ends at its next await; its unacked messages come back to the next leader
            if stuck:
                log.warning("%d consumer task(s) did not stop within %.0f s; left to end", len(stuck),
                            timeout)
        for sub in subs:  # their inboxes, which a new term would otherwise leave behind
            try:
                await asyncio.wait_for(sub.unsubscribe(), 1.0)
            except Exception as e:  # noqa: BLE001 - NATS away: the connection's end drops them
                log.debug("unsubscribing a consumer failed: %s", e)

    async def _partition(self, n: int, sub, term: int) -> None:
        while term == self._term:
            try:
                msgs = await self._pull(sub)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - NATS reconnecting: wait and pull again
                log.debug("partition %d: fetch failed: %s", n, e)
                await asyncio.sleep(0.5)
                continue
            if not msgs or term != self._term:
                continue  # (stopped: unacked, they come back to the next leader)
            try:
                await self._apply(n, msgs)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug must not end this partition's consumption for good
                log.exception("partition %d: applying a pull failed; its messages will be redelivered", n)
                await asyncio.sleep(RETRY_DELAY_S)

    @staticmethod
    async def _pull(sub) -> list:
        """Up to FETCH messages, returned as soon as the first one is there ([] when none came within
        FETCH_WAIT_S). The first is pulled alone (nats-py's fetch of one returns on it); when it says more
        are pending, they are pulled at once as a batch that the server fills without waiting."""
        import nats.errors

        try:
            msgs = await sub.fetch(1, timeout=FETCH_WAIT_S)
        except (asyncio.TimeoutError, nats.errors.TimeoutError):
            return []
        more = min(FETCH - 1, msgs[-1].metadata.num_pending or 0)
        if more:
            try:
                msgs += await sub.fetch(more, timeout=DRAIN_WAIT_S)
            except Exception as e:  # noqa: BLE001 - a timeout, NATS away: the rest comes on the next turn
                log.debug("pulling the pending messages failed: %s", e)
        return msgs

    async def _apply(self, n: int, msgs: list) -> None:
        """Submit every message of the pull to the writer at once (it commits them as one group), then ack
        each message whose events were committed."""
        pulled = time.time()
        pending: list[tuple[Any, Future]] = []
        for m in msgs:
            try:
                events = decode(m.data)
            except msgspec.DecodeError as e:  # not ours, or from an incompatible release: never retried
                log.error("partition %d: dropping an undecodable message (seq %s): %s", n,
                          m.metadata.sequence.stream, e)
                await m.term()
                continue
            # the api node authenticated the token; its team is checked against the pipelines' owners
            # here, where the owners are known (admission.py), from the message's caller header
            pending.append((m, self.pm.writer.submit(events, caller_of(m.headers))))
        for m, fut in pending:
            try:
                await asyncio.wrap_future(fut)
            except Unavailable:
                await _quietly(m.nak(delay=RETRY_DELAY_S))
                continue
            except Rejected as e:  # the database refuses these events: retrying cannot help
                log.error("partition %d: the store refused a message's events, dropped: %s", n, e)
                await _quietly(m.term())
                continue
            except (Forbidden, TooMany) as e:  # the token may not write these pipelines: never retried
                log.warning("partition %d: a message's events were refused, dropped: %s", n, e)
                self.refused += 1
                await _quietly(m.term())
                continue
            except Exception:  # noqa: BLE001 - a bug on one message: retried later, logged once per try
                log.exception("partition %d: applying a message failed; it will be redelivered", n)
                await _quietly(m.nak(delay=RETRY_DELAY_S))
                continue
            committed = time.time()
            await _quietly(m.ack())
            self.consumed += 1
            if trace.isEnabledFor(logging.DEBUG):
                _trace_message(m, pulled, committed)

    async def watch_lag(self) -> None:
        """Keep `lag` current for /metrics (every node with a NATS connection reports it)."""
        while True:
            js = self.bus.js
            if js is not None:
                for n in range(PARTITIONS):
                    try:
                        info = await js.consumer_info(self.names.stream, self.names.consumer(n), timeout=1.0)
                        self.lag[n] = (info.num_pending or 0) + (info.num_ack_pending or 0)
                    except Exception:  # noqa: BLE001 - not created yet, or NATS away: keep the last value
                        pass
            await asyncio.sleep(LAG_EVERY_S)


def _trace_message(m, pulled: float, committed: float) -> None:
    try:
        pipelines = sorted({e.pipeline for e in decode(m.data)})
        stored = m.metadata.timestamp.timestamp()
    except Exception:  # noqa: BLE001 - tracing must never fail a message
        return
    trace.debug("message pipelines=%s stored=%.6f pulled=%.6f committed=%.6f acked=%.6f",
                ",".join(pipelines), stored, pulled, committed, time.time())


async def _quietly(coro) -> None:
    """An ack or nak that fails (NATS away) is harmless: the message is redelivered and is a duplicate."""
    try:
        await coro
    except Exception as e:  # noqa: BLE001
        log.debug("ack/nak failed: %s", e)
