"""The cluster's pure pieces, no servers: partitions, message ids, chunking, options, members, watchdog."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipemon.cli import app
from pipemon.cluster.node import Role, application_name, count_members
from pipemon.cluster.watchdog import FINGERPRINT, MAX_OUTBOX_AGE_S, heartbeat, unhealthy
from pipemon.log import PARTITIONS, batch_id, check_prefix, owner_key, partition_of, split_by_partition
from pipemon.log.nats import Names, NatsLog, decode, encode
from pipemon.model import Event, EventType, RunRef, Source


def ev(key: str, ns: str = "ns", name: str = "p", parent: RunRef | None = None, raw: bytes | None = None):
    return Event(key=key, source=Source.NATIVE, namespace=ns, name=name, run_id="r", type=EventType.START,
                 time=1.0, parent=parent, raw=raw)


def test_partition_is_stable_bounded_and_spreads():
    keys = [f"ns/p{i}" for i in range(1000)]
    parts = [partition_of(k) for k in keys]
    assert parts == [partition_of(k) for k in keys]
    assert set(parts) == set(range(PARTITIONS))  # 1,000 pipelines reach every partition
    assert max(parts.count(n) for n in range(PARTITIONS)) < 2 * 1000 / PARTITIONS


def test_a_task_event_travels_with_its_root_pipeline():
    task = ev("k2", name="p.task", parent=RunRef("ns", "p", "r"))
    assert owner_key(task) == "ns/p"
    groups = split_by_partition([ev("k1"), task, ev("k3", name="other")])
    assert any({e.key for e in g} >= {"k1", "k2"} for g in groups.values())
    assert sum(len(g) for g in groups.values()) == 3


def test_message_id_follows_the_events_keys():
    a, b = ev("a" * 32), ev("b" * 32)
    assert batch_id([a, b]) == batch_id([ev("a" * 32), ev("b" * 32)])  # a retry: the same id
    assert batch_id([a, b]) != batch_id([b, a]) != batch_id([a])


def test_encode_round_trips_and_chunks_fit_max_payload():
    events = [ev(f"{i:032d}", raw=b"x" * 500) for i in range(100)]
    assert decode(encode(events)) == events
    bus = NatsLog("nats://127.0.0.1:1", Names("t"))
    bus.max_payload = 8 * 1024
    chunks = bus._chunks(events)
    assert len(chunks) > 1 and [e for c, _ in chunks for e in c] == events
    assert all(payload == encode(c) and len(payload) <= bus.max_payload - 1024 for c, payload in chunks)


@pytest.mark.parametrize("prefix", ["", "a.b", "a b", "x" * 33, "a>", "a*"])
def test_bad_prefix_is_refused_with_its_reason(prefix):
    with pytest.raises(ValueError, match="--bus-prefix"):
        check_prefix(prefix)


def test_names_come_from_the_prefix():
    n = Names("prod-eu")
    assert (n.stream, n.subject(3), n.consumer(3), n.wake) == (
        "prod-eu_events", "prod-eu.events.3", "prod-eu_worker_3", "prod-eu.outbox")


def test_live_members_by_role():
    names = [application_name("p", Role.WORKER, "a"), application_name("p", Role.WORKER, "b"),
             application_name("p", Role.ALL, "c"), application_name("p", Role.API, "d"), "psql", "x:y"]
    assert count_members(names) == {"api": 1, "worker": 3, "dispatcher": 1}


@pytest.mark.parametrize("log_, db, workers, oldest, why", [
    (None, None, 1, 0.0, None),
    (None, None, 2, None, None),
    ("disconnected", None, 1, 0.0, "event log"),
    (None, "unreachable", 1, 0.0, "database"),
    (None, None, 0, 0.0, "no live worker"),
    (None, None, 1, MAX_OUTBOX_AGE_S + 1, "waited"),
])
def test_watchdog_beats_only_when_healthy(log_, db, workers, oldest, why):
    got = unhealthy(log_, db, workers, oldest)
    assert (got is None) if why is None else (why in got)


def test_heartbeat_is_one_incident_with_a_key_per_beat():
    a, b = heartbeat("dms", 1000.0, "n1"), heartbeat("dms", 1300.0, "n1")
    assert a.alerts[0].fingerprint == b.alerts[0].fingerprint == FINGERPRINT
    assert a.key != b.key and a.receiver == "dms"


@pytest.mark.parametrize("args, said", [
    (["--role", "worker"], "needs the shared event log"),
    (["--role", "boss"], "expected one of all, api, worker, dispatcher"),
    (["--role", "api", "--bus", "nats://127.0.0.1:4222"], "needs a PostgreSQL --db"),
    (["--role", "api", "--bus", "http://x"], "expected memory or nats://"),
    (["--role", "api", "--bus", "nats://127.0.0.1:4222", "--bus-prefix", "a.b"], "--bus-prefix"),
])
def test_serve_refuses_bad_role_options_with_the_reason(args, said, tmp_path):
    r = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", *args])
    assert r.exit_code == 2
    assert said in r.output
