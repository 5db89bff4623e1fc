"""The worker role: consume the event log into the store.

While this node leads the `worker` lock (leader.py), one task per partition pulls that partition's durable
consumer, hands each message's events to the writer (writer/: dedup, fold, health, alerts, one
transaction per group) and acks a message only after the writer committed it. A message whose events are
already stored (a redelivery after a crash between commit and ack) is committed as duplicates: nothing
changes. The database away: the message is nak'ed with a delay and comes back, so nothing acknowledged by
an api node is lost while PostgreSQL is down; the workers catch up when it returns.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import Any

import msgspec

from pipemon.errors import Forbidden, Rejected, TooMany, Unavailable
from pipemon.log import PARTITIONS, caller_of
from pipemon.log.nats import Names, NatsLog, decode

log = logging.getLogger(__name__)

FETCH = 16              # messages per pull (each holds up to one request's events of the partition)
FETCH_WAIT_S = 1.0
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

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        self.pm.writer.request_timeout = WRITER_TIMEOUT_S

        js = self.bus.js
        assert js is not None
        subs = []
        for n in range(PARTITIONS):
            cfg = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                 ack_wait=ACK_WAIT_S, max_ack_pending=FETCH * 4, max_deliver=-1)
            subs.append(await js.pull_subscribe(self.names.subject(n), durable=self.names.consumer(n),
                                                stream=self.names.stream, config=cfg))
        self._tasks = [asyncio.create_task(self._partition(n, sub)) for n, sub in enumerate(subs)]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _partition(self, n: int, sub) -> None:
        import nats.errors

        while True:
            try:
                msgs = await sub.fetch(FETCH, timeout=FETCH_WAIT_S)
            except (asyncio.TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - NATS reconnecting: wait and pull again
                log.debug("partition %d: fetch failed: %s", n, e)
                await asyncio.sleep(0.5)
                continue
            await self._apply(n, msgs)

    async def _apply(self, n: int, msgs: list) -> None:
        """Submit every message of the pull to the writer at once (it commits them as one group), then ack
        each message whose events were committed."""
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
            await _quietly(m.ack())
            self.consumed += 1

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


async def _quietly(coro) -> None:
    """An ack or nak that fails (NATS away) is harmless: the message is redelivered and is a duplicate."""
    try:
        await coro
    except Exception as e:  # noqa: BLE001
        log.debug("ack/nak failed: %s", e)
