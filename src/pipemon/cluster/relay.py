"""Operator changes reach the worker that keeps them, whichever node they were sent to (api/owner.py).

A node whose writer does not keep what a request changes sends the request whole (method, path, query,
headers, body, the client's address) as a NATS request to `{prefix}.operate.{partition}`, or to
`{prefix}.operate.any` when it does not know the partition (an api node does not read the alert first).
Every worker whose writer runs subscribes to `any` and to each partition it keeps (all 16 while it leads,
its share in partitioned mode), in one queue group, so one of them answers. It runs the request through its
own HTTP app in process, with the caller's own credentials (checked again there), and replies with the
response; a worker that took an `any` request for a partition it does not own relays it once more, to that
partition's subject (at most `owner.MAX_HOPS`). No worker keeping it (a take-over in progress, NATS away):
503 with Retry-After, nothing changed. NATS is inside the trust boundary, as PostgreSQL is: whoever can
publish on these subjects can speak for any client that reaches the api.

Dispatchers hold no engine state: a receiver that keeps failing (or works again) is reported the same way,
on `{prefix}.receivers.{partition}`, to the worker keeping its `receiver_failing` alert.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
from fastapi import Request
from fastapi.responses import Response
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from pipemon.api.owner import RELAY_HOPS
from pipemon.errors import Elsewhere, Unavailable
from pipemon.log import partition_of
from pipemon.writer.alerts import RECEIVER_PIPELINE

if TYPE_CHECKING:
    from pipemon.cluster.node import Node

log = logging.getLogger(__name__)

RELAY_TIMEOUT_S = 15.0  # above the writer's own deadline for a call (writer.REQUEST_TIMEOUT_S)
SYNC_EVERY_S = 0.5      # how soon a worker that starts or stops keeping partitions (un)subscribes
QUEUE = "operate"
# not forwarded: the relay sets its own (hop count, length) and these describe one connection only
DROPPED = {"content-length", "transfer-encoding", "connection", "keep-alive", RELAY_HOPS}


class Envelope(msgspec.Struct, frozen=True):
    method: str
    target: str                      # path and query, as received
    headers: list[tuple[str, str]]
    body: bytes
    client: str | None
    hops: int


class Answer(msgspec.Struct, frozen=True):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class ReceiverStatus(msgspec.Struct, frozen=True):
    """A dispatcher's news that deliveries to a receiver keep failing, or work again."""
    receiver: str
    failing: bool
    error: str


def subject(prefix: str, partition: int | None) -> str:
    return f"{prefix}.operate.{'any' if partition is None else partition}"


def receiver_subject(prefix: str, partition: int) -> str:
    return f"{prefix}.receivers.{partition}"


class Relay:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.app: Any = None  # the node's HTTP app, set when it starts (api/app.py lifespan)
        self._subs: dict[str, Any] = {}
        self._inflight: set[asyncio.Task] = set()
        self.relayed = 0   # requests this node sent on / answered for another
        self.answered = 0

    # --- the sending side ---------------------------------------------------------------------------------
    async def send(self, request: Request, why: Elsewhere, hops: int) -> Response:
        nc = self.node.bus.nc
        if nc is None:
            raise why  # NATS not reached yet: the 503 that says what keeps it
        query = request.url.query
        env = Envelope(request.method, request.url.path + (f"?{query}" if query else ""),
                       [(k, v) for k, v in request.headers.items() if k not in DROPPED],
                       await request.body(), request.client.host if request.client else None, hops)
        to = subject(self.node.names.prefix, why.partition)
        try:
            msg = await nc.request(to, msgspec.json.encode(env), timeout=RELAY_TIMEOUT_S)
        except NoRespondersError:
            raise Unavailable(f"{why}, and no worker keeping it answers now (a take-over in progress, or "
                              "none running); retry", 2.0) from None
        except (NatsTimeout, asyncio.TimeoutError):
            raise Unavailable(f"{why}; the worker keeping it did not answer within {RELAY_TIMEOUT_S:.0f} s; "
                              "retry", 2.0) from None
        except NatsError as e:  # disconnected meanwhile, a body over NATS's max_payload …
            raise Unavailable(f"{why}; relaying it failed ({type(e).__name__}); retry", 2.0) from None
        self.relayed += 1
        ans = msgspec.json.decode(msg.data, type=Answer)
        return Response(ans.body, status_code=ans.status, headers=dict(ans.headers))

    async def report_receiver(self, status: ReceiverStatus) -> None:
        """A dispatcher's receiver news, to the worker keeping its `receiver_failing` alert (which lives in
        the partition of `pipemon/receiver:{name}`). Raises Unavailable when none took it: the deliverer
        keeps the record and sends it again (receiver_status is idempotent)."""
        nc = self.node.bus.nc
        if nc is None:
            raise Unavailable("NATS is not reached yet", 2.0)
        part = partition_of(RECEIVER_PIPELINE.format(status.receiver))
        try:
            to = receiver_subject(self.node.names.prefix, part)
            msg = await nc.request(to, msgspec.json.encode(status), timeout=RELAY_TIMEOUT_S)
        except NatsError as e:
            raise Unavailable(f"no worker keeping partition {part} took receiver {status.receiver}'s status "
                              f"({type(e).__name__})", 2.0) from None
        if msg.data != b"ok":
            raise Unavailable(f"the worker keeping partition {part} could not record receiver "
                              f"{status.receiver}'s status: {msg.data[:300].decode(errors='replace')}", 2.0)

    # --- the answering side (workers whose writer runs) -----------------------------------------------------
    async def keep_subscribed(self) -> None:
        """A node loop: subscribed to `any` and each kept partition while the writer runs here, else none."""
        while True:
            await self._sync()
            await asyncio.sleep(SYNC_EVERY_S)

    async def _sync(self) -> None:
        nc = self.node.bus.nc
        if nc is None or self.app is None:
            return
        kept = self.node.kept_partitions()
        prefix = self.node.names.prefix
        want = {subject(prefix, p) for p in kept} | ({subject(prefix, None)} if kept else set())
        want |= {receiver_subject(prefix, p) for p in kept}
        for name in sorted(set(self._subs) - want):
            sub = self._subs.pop(name)
            try:
                await sub.unsubscribe()
            except Exception as e:  # noqa: BLE001 - a closed connection has no subscriptions left anyway
                log.debug("unsubscribing %s: %s", name, e)
        for name in sorted(want - set(self._subs)):
            handler = self._receiver_status if ".receivers." in name else self._answer
            cb = functools.partial(self._spawn, handler)
            self._subs[name] = await nc.subscribe(name, queue=QUEUE, cb=cb)

    async def _spawn(self, handler, msg) -> None:
        """nats-py runs one subscription's callbacks one after another: each request gets its own task, so a
        slow one (a writer call waiting for the database) does not hold up the next."""
        task = asyncio.get_running_loop().create_task(handler(msg))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def close(self) -> None:
        subs, self._subs = self._subs, {}
        for sub in subs.values():
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001
                pass

    async def _answer(self, msg) -> None:
        try:
            env = msgspec.json.decode(msg.data, type=Envelope)
        except msgspec.DecodeError as e:
            log.warning("a relayed request that is not one (%s): dropped", e)
            return
        headers = [(k, v) for k, v in env.headers if k not in DROPPED] + [(RELAY_HOPS, str(env.hops))]
        transport = httpx.ASGITransport(app=self.app, client=(env.client or "0.0.0.0", 0))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
                r = await http.request(env.method, env.target, headers=headers, content=env.body,
                                       timeout=RELAY_TIMEOUT_S)
            ans = Answer(r.status_code, [(k, v) for k, v in r.headers.items() if k not in DROPPED], r.content)
        except Exception as e:  # noqa: BLE001 - the sender must get an answer, not wait for its timeout
            log.exception("answering a relayed %s %s failed", env.method, env.target)
            why = f"the worker keeping it failed to answer: {type(e).__name__}"
            body = msgspec.json.encode({"error": "storage_unavailable", "message": why})
            ans = Answer(503, [("content-type", "application/json"), ("retry-after", "2")], body)
        self.answered += 1
        await msg.respond(msgspec.json.encode(ans))

    async def _receiver_status(self, msg) -> None:
        pm = self.node.pm
        try:
            st = msgspec.json.decode(msg.data, type=ReceiverStatus)
            part = partition_of(RECEIVER_PIPELINE.format(st.receiver))
            if part not in self.node.kept_partitions():  # handed over since the last subscription sync
                raise Unavailable(f"partition {part} is not kept here any more")
            await asyncio.wrap_future(pm.writer.submit_call(
                lambda conn, now: pm.alerts.receiver_status(conn, st.receiver, st.failing, st.error, now)))
            answer = b"ok"
        except Exception as e:  # noqa: BLE001 - the dispatcher keeps the record and sends it again
            answer = f"{type(e).__name__}: {e}".encode()[:500]
        await msg.respond(answer)
