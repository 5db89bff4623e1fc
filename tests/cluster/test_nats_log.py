"""The api side of the NATS event log against the real JetStream: each PubAck checked by pipemon itself
(log/nats.py publishes with a reply inbox, not through nats-py's JetStreamContext)."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from pipemon.access import Caller, Role
from pipemon.errors import Unavailable
from pipemon.log import CALLER_HEADER, PARTITIONS, caller_of
from pipemon.log.nats import Names, NatsLog, decode, pub_ack, NotStored
from pipemon.model import Event, EventType, Source
from tests.conftest import NATS_URL


def ev(i: int, pipeline: int) -> Event:
    return Event(key=f"{i:032x}", source=Source.NATIVE, namespace="ns", name=f"p{pipeline}", run_id=f"r{i}",
                 type=EventType.START, time=1.0)


async def connected(prefix: str, **kw) -> NatsLog:
    log = NatsLog(NATS_URL or "", Names(prefix), **kw)
    await log.start()
    for _ in range(200):
        if log.ready() is None:
            return log
        await asyncio.sleep(0.05)
    raise AssertionError(f"not connected: {log.ready()}")


async def stored(log: NatsLog) -> list[tuple[Event, dict]]:
    """Every message of the stream: (event, headers)."""
    info = await log.js.stream_info(log.names.stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        m = await log.js.get_msg(log.names.stream, seq)
        out += [(e, m.headers or {}) for e in decode(m.data)]
    return out


@pytest.fixture
def prefix():
    if not NATS_URL:
        pytest.skip("needs PIPEMON_TEST_NATS_URL")
    p = "tl" + uuid.uuid4().hex[:10]
    yield p

    async def drop() -> None:
        import nats
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(f"{p}_events")
        except Exception:  # noqa: BLE001 - never created
            pass
        await nc.close()
    asyncio.run(drop())


def test_append_is_acknowledged_per_partition_and_a_retry_is_a_duplicate(prefix):
    async def go():
        log = await connected(prefix)
        try:
            events = [ev(i, i % 40) for i in range(200)]
            who = Caller("ingest-bot", Role.INGEST, "billing", 7)
            got = await log.append(events, who)
            assert (got.accepted, got.duplicates) == (200, 0)
            again = await log.append(events, who)  # the client's retry: the same Nats-Msg-Ids
            assert (again.accepted, again.duplicates) == (0, 200)
            kept = await stored(log)
            assert sorted(e.key for e, _ in kept) == sorted(e.key for e in events)  # each once
            assert {caller_of(h) for _, h in kept} == {who}
            other = await log.append([ev(1000, 1)])  # an org-wide caller: no header
            assert (other.accepted, other.duplicates) == (1, 0)
            assert [CALLER_HEADER in h for e, h in await stored(log) if e.key == ev(1000, 1).key] == [False]
        finally:
            await log.close()
    asyncio.run(go())


def test_a_large_request_is_split_to_fit_max_payload_and_all_acknowledged(prefix):
    async def go():
        log = await connected(prefix)
        try:
            log.max_payload = 4096
            events = [ev(i, 0) for i in range(300)]  # one partition, many messages
            got = await log.append(events)
            assert (got.accepted, got.duplicates) == (300, 0)
            assert len(await stored(log)) == 300
        finally:
            await log.close()
    asyncio.run(go())


def test_no_stream_or_no_ack_is_unavailable_never_acknowledged(prefix):
    async def go():
        log = await connected(prefix, publish_timeout=0.5)
        try:
            await log.js.delete_stream(log.names.stream)  # nobody stores the subject: no responders
            with pytest.raises(Unavailable) as e:
                await log.append([ev(1, 1)])
            assert e.value.retry_after > 0
            assert not log._waiting  # nothing left waiting
        finally:
            await log.close()
    asyncio.run(go())


class Reply:
    def __init__(self, data: bytes, headers: dict | None = None) -> None:
        self.data, self.headers = data, headers


@pytest.mark.parametrize("reply, why", [
    (None, "in time"),
    (Reply(b"", {"Status": "503"}), "no responders"),
    (Reply(b'{"error":{"code":503,"err_code":10077,"description":"resource limits exceeded"}}'), "refused"),
    (Reply(b"not json"), "not a PubAck"),
    (Reply(b'{"seq":1}'), "refused"),
])
def test_a_reply_that_is_not_a_pub_ack_is_not_stored(reply, why):
    with pytest.raises(NotStored, match=why):
        pub_ack(reply)


def test_a_pub_ack_says_whether_it_was_a_duplicate():
    assert pub_ack(Reply(b'{"stream":"s","seq":4,"duplicate":true}')).duplicate
    assert not pub_ack(Reply(b'{"stream":"s","seq":5}')).duplicate
    assert PARTITIONS == 16
