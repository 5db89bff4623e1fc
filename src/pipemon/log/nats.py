"""The event log on NATS JetStream.

Names, all from `--bus-prefix` (default `pipemon`), so several deployments or test runs share one NATS:
  stream     {prefix}_events        subjects {prefix}.events.0 … {prefix}.events.15 (PARTITIONS)
  consumers  {prefix}_worker_{n}    one durable pull consumer per partition (cluster/consumer.py)
  wake-up    {prefix}.outbox        core NATS, no stream: "the outbox has new rows" (worker → dispatcher)

A request's events are split by partition (a hash of the pipeline that owns them); each partition's events
travel as one message (several when over the server's max_payload) whose Nats-Msg-Id derives from their
idempotency keys, so the stream's duplicate window drops a client's retry. `append` returns only once every
message of the request has its PubAck; a server away or slow raises Unavailable (503 + Retry-After) and
the client retries: what was stored meanwhile is dropped as a duplicate by the stream or by the worker.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from typing import Any

import msgspec

from pipemon.access import Caller
from pipemon.errors import Unavailable
from pipemon.log import PARTITIONS, batch_id, caller_header, check_prefix, split_by_partition
from pipemon.model import Event

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 2.0     # a PubAck later than this: 503, the client retries
DUPLICATE_WINDOW_S = 300.0  # JetStream drops a Nats-Msg-Id seen within this window
RETRY_AFTER_S = 2.0
MAX_AGE_S = 7 * 86400.0     # the log keeps a week: a worker outage shorter than that loses nothing

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Event]).decode


def encode(events: list[Event]) -> bytes:
    return _encode(events)


def decode(payload: bytes) -> list[Event]:
    return _decode(payload)


class _PubAck(msgspec.Struct):
    """JetStream's answer to a publish: {"stream", "seq", "duplicate"}, or {"error": {…}}."""
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(_PubAck).decode


class NotStored(Exception):
    """A publish that JetStream did not confirm: no stream listens, it refused, or no answer in time."""


def pub_ack(msg) -> _PubAck:
    """The PubAck in a reply, or NotStored (what nats-py's JetStreamContext.publish checks, without its
    per-message wait_for, JSON-to-dict and dataclass)."""
    if msg is None:
        raise NotStored("no PubAck in time")
    headers = msg.headers
    if headers and headers.get("Status") == "503":
        raise NotStored("no responders: no stream takes the subject")
    try:
        ack = _decode_ack(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise NotStored(f"not a PubAck: {msg.data[:200]!r}") from None
    if ack.error is not None or not ack.stream:
        raise NotStored(f"JetStream refused the message: {ack.error}")
    return ack


@dataclass(frozen=True)
class Names:
    prefix: str = "pipemon"

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    @property
    def stream(self) -> str:
        return f"{self.prefix}_events"

    def subject(self, partition: int) -> str:
        return f"{self.prefix}.events.{partition}"

    def consumer(self, partition: int) -> str:
        return f"{self.prefix}_worker_{partition}"

    @property
    def wake(self) -> str:
        return f"{self.prefix}.outbox"


@dataclass(frozen=True)
class Appended:
    accepted: int
    duplicates: int


class NatsLog:
    """A connection to NATS kept by its own retrying task; `append` on the caller's event loop."""

    def __init__(self, url: str, names: Names, *, publish_timeout: float = PUBLISH_TIMEOUT_S,
                 name: str = "pipemon") -> None:
        self.url, self.names, self.publish_timeout, self.client_name = url, names, publish_timeout, name
        self.nc: Any = None   # nats.aio.client.Client once connected
        self.js: Any = None   # its JetStreamContext
        self.max_payload = 1 << 20
        self._problem: str | None = "not connected yet"
        self._task: asyncio.Task | None = None
        # PubAcks come to one wildcard inbox ({inbox}.{token}); each waits as a future under its token
        self._inbox = ""
        self._waiting: dict[str, asyncio.Future] = {}
        self._tokens = itertools.count()

    # --- connection ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect in the background: a node starts (and answers 503) while NATS is away."""
        self._task = asyncio.create_task(self._connect_forever())

    async def _connect_forever(self) -> None:
        import nats

        attempt = 0
        while self.nc is None:
            attempt += 1
            nc = None
            try:
                nc = await nats.connect(self.url, name=self.client_name, connect_timeout=2,
                                        allow_reconnect=True, max_reconnect_attempts=-1,
                                        reconnect_time_wait=0.5, ping_interval=5, max_outstanding_pings=2,
                                        disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
                                        error_cb=self._error,
                                        # our subjects are built from a checked prefix (check_prefix)
                                        skip_subject_validation=True)
                js = nc.jetstream(timeout=self.publish_timeout)
                await ensure_stream(js, self.names)
                inbox = nc.new_inbox() + "."
                await nc.subscribe(inbox + "*", cb=self._acked)
            except Exception as e:  # noqa: BLE001 - away, refused, or no JetStream: say why, retry
                self._problem = f"NATS at {self.url} unreachable: {type(e).__name__}: {e}"
                (log.warning if attempt == 1 else log.debug)("%s; retrying", self._problem)
                if nc is not None:
                    try:
                        await nc.close()
                    except Exception:  # noqa: BLE001 - closing what never fully opened
                        pass
                await asyncio.sleep(min(5.0, 0.25 * attempt))
                continue
            self.nc, self.js, self._inbox = nc, js, inbox
            self.max_payload = nc.max_payload or self.max_payload
            self._problem = None
            log.info("connected to NATS %s (stream %s)", self.url, self.names.stream)

    async def _disconnected(self) -> None:
        self._problem = f"disconnected from NATS at {self.url}; reconnecting"

    async def _reconnected(self) -> None:
        self._problem = None

    async def _error(self, e: Exception) -> None:
        log.debug("NATS: %s", e)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.nc is not None:
            try:
                await self.nc.drain()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass

    def ready(self) -> str | None:
        return self._problem

    # --- the api side -------------------------------------------------------------------------------------
    async def append(self, events: list[Event], caller: Caller | None = None) -> Appended:
        """One message per partition (more when over max_payload), published at once; returns when every
        PubAck is in, else Unavailable. A core publish with a reply inbox and the Nats-Msg-Id header is
        what JetStreamContext.publish does; the PubAck is checked here (pub_ack)."""
        if not events:
            return Appended(0, 0)
        nc = self.nc
        if nc is None or self._problem is not None:
            raise Unavailable(f"the event log is unavailable ({self._problem}); retry", RETRY_AFTER_S)
        who = caller_header(caller)
        loop = asyncio.get_running_loop()
        waiting, inbox = self._waiting, self._inbox
        sent: list[tuple[str, int, asyncio.Future]] = []
        timer = None
        try:
            for partition, evs in split_by_partition(events).items():
                subject = self.names.subject(partition)
                for chunk, payload in self._chunks(evs):
                    token = str(next(self._tokens))
                    fut = waiting[token] = loop.create_future()
                    sent.append((token, len(chunk), fut))
                    await nc.publish(subject, payload, reply=inbox + token,
                                     headers={"Nats-Msg-Id": batch_id(chunk), **who})
            timer = loop.call_later(self.publish_timeout, _expire, [f for _, _, f in sent])
            dup = 0
            for _, n, fut in sent:
                if pub_ack(await fut).duplicate:
                    dup += n
        except Exception as e:  # noqa: BLE001 - timeout, no responders, disconnected: not stored for sure
            raise Unavailable(f"the event log did not confirm the events ({type(e).__name__}); retry",
                              RETRY_AFTER_S) from None
        finally:
            if timer is not None:
                timer.cancel()
            for token, _, _ in sent:
                waiting.pop(token, None)
        return Appended(len(events) - dup, dup)

    async def _acked(self, msg) -> None:
        fut = self._waiting.get(msg.subject[len(self._inbox):])
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _chunks(self, events: list[Event]) -> list[tuple[list[Event], bytes]]:
        """(events, their encoding) per message, each within the server's max_payload (halving until it
        fits)."""
        payload = encode(events)
        if len(payload) <= self.max_payload - 1024 or len(events) == 1:
            return [(events, payload)]
        mid = len(events) // 2
        return self._chunks(events[:mid]) + self._chunks(events[mid:])


def _expire(futures: list[asyncio.Future]) -> None:
    for f in futures:
        if not f.done():
            f.set_result(None)  # no PubAck in time (pub_ack says so); never an exception left unretrieved


async def ensure_stream(js, names: Names) -> None:
    """Create the stream when missing (api and worker nodes both may start first)."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(names.stream)
        return
    except NotFoundError:
        pass
    cfg = StreamConfig(name=names.stream, subjects=[names.subject(n) for n in range(PARTITIONS)],
                       storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_S, max_age=MAX_AGE_S)
    try:
        await js.add_stream(cfg)
    except Exception as e:  # noqa: BLE001 - another node created it meanwhile
        if "already in use" not in str(e):
            raise
