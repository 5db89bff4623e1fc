"""The writer's recovery path, piece by piece: how faults are classified, the reconnect backoff, a
database that goes away or stops answering (through a proxy this test owns), an input the database
refuses, a writer thread that dies, and /readyz naming what fails."""
from __future__ import annotations

import sqlite3
import time

import msgspec
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa_exc

from pipemon.api.app import create_app, readiness
from pipemon.app import build
from pipemon.clock import WallClock
from pipemon.errors import Rejected, Unavailable
from pipemon.ingest import native
from pipemon.store.bodies import read_bodies
from pipemon.writer.writer import BACKOFF_BASE_S, BACKOFF_CAP_S, Fault, backoff, classify


def wrapped(cls, orig: Exception) -> Exception:
    return cls("INSERT …", {}, orig)


PG = psycopg.errors
OpErr = sa_exc.OperationalError


@pytest.mark.parametrize(("error", "fault"), [
    (wrapped(OpErr, psycopg.OperationalError("server closed the connection")), Fault.TRANSIENT),
    (wrapped(OpErr, PG.AdminShutdown("terminating connection")), Fault.TRANSIENT),
    (wrapped(OpErr, PG.QueryCanceled("statement timeout")), Fault.TRANSIENT),
    (wrapped(OpErr, PG.SerializationFailure("could not serialize")), Fault.TRANSIENT),
    (wrapped(OpErr, PG.DeadlockDetected("deadlock")), Fault.TRANSIENT),
    (wrapped(OpErr, sqlite3.OperationalError("database is locked")), Fault.TRANSIENT),
    (wrapped(sa_exc.InterfaceError, psycopg.InterfaceError("the connection is closed")), Fault.TRANSIENT),
    (sa_exc.TimeoutError("QueuePool limit reached"), Fault.TRANSIENT),
    (Unavailable("down"), Fault.TRANSIENT),
    (wrapped(sa_exc.IntegrityError, PG.UniqueViolation("duplicate key")), Fault.INPUT),
    (wrapped(sa_exc.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed")), Fault.INPUT),
    (wrapped(sa_exc.DataError, PG.NumericValueOutOfRange("out of range")), Fault.INPUT),
    # an index row over PostgreSQL's limit is an OperationalError to the DB-API, but the input's fault
    (wrapped(OpErr, PG.ProgramLimitExceeded("index row size")), Fault.INPUT),
    (wrapped(sa_exc.ProgrammingError, PG.UndefinedColumn("no such column")), Fault.BUG),
    (KeyError("pipeline"), Fault.BUG),
])
def test_classify(error, fault):
    assert classify(error) is fault


def test_backoff_doubles_is_capped_and_jittered():
    top = [backoff(n, lambda lo, hi: hi) for n in range(1, 9)]
    low = [backoff(n, lambda lo, hi: lo) for n in range(1, 9)]
    assert top[:3] == [BACKOFF_BASE_S, 2 * BACKOFF_BASE_S, 4 * BACKOFF_BASE_S]
    assert max(top) == BACKOFF_CAP_S and top[-1] == BACKOFF_CAP_S
    assert low == [t / 2 for t in top]


def events(body: dict) -> list:
    return native.parse(msgspec.json.encode(body), time.time())


def until(cond, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def stored(url: str, event_id: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as c:
        bodies = read_bodies(c)
    engine.dispose()
    return sum(1 for b in bodies if msgspec.json.decode(b).get("event_id") == event_id)


def test_database_away_answers_503_at_once_then_recovers_without_restart(owned_db):
    url, proxy, _direct = owned_db
    pm = build(url, clock=WallClock(), deliver=False)
    pm.start()
    try:
        assert pm.writer.submit(events({"pipeline": "a/b", "type": "HEARTBEAT", "event_id": "1"})).result(10)
        proxy.cut()
        until(lambda: pm.writer.health().down_for is not None, "the writer notices (its next tick)")
        assert "database" in readiness(pm)
        fut = pm.writer.submit(events({"pipeline": "a/b", "type": "HEARTBEAT", "event_id": "2"}))
        assert fut.done(), "while the database is away, a request is answered at once, not after a timeout"
        with pytest.raises(Unavailable) as e:
            fut.result(0)
        assert e.value.retry_after >= 1
        proxy.restore()
        until(lambda: pm.writer.health().down_for is None, "the writer reconnects and reloads")
        r = pm.writer.submit(events({"pipeline": "a/b", "type": "HEARTBEAT", "event_id": "2"})).result(10)
        assert (r.accepted, r.duplicates) == (1, 0)
        pm.writer.tick(10)  # the clock runs again
        assert readiness(pm) == {}
        assert pm.writer.stats["outages"] == 1 and pm.writer.stats["reconnects"] == 1
    finally:
        proxy.restore()
        pm.close()


def test_request_answered_503_at_its_deadline_is_never_committed_later(owned_db):
    url, proxy, direct = owned_db
    pm = build(url, clock=WallClock(), deliver=False)
    pm.writer.request_timeout = 1.0
    pm.start()
    try:
        proxy.freeze()  # the database stops answering; nothing is closed
        fut = pm.writer.submit(events({"pipeline": "a/b", "type": "HEARTBEAT", "event_id": "late"}))
        with pytest.raises(Unavailable):
            fut.result(5)
        proxy.restore()  # the held statements now complete; the writer must roll back, not commit
        until(lambda: pm.writer.health().down_for is None and pm.writer.queue_depth() == 0, "writer idle")
        probe = pm.writer.submit(events({"pipeline": "a/b", "type": "HEARTBEAT", "event_id": "probe"}))
        assert probe.result(10).accepted == 1
        assert stored(direct, "late") == 0, "answered 503, yet stored behind the client's back"
        retry = events({"pipeline": "a/b", "type": "HEARTBEAT", "event_id": "late"})
        again = pm.writer.submit(retry).result(10)
        assert (again.accepted, again.duplicates) == (1, 0)  # the client's retry stores it, once
        assert stored(direct, "late") == 1
    finally:
        proxy.restore()
        pm.close()


def test_started_work_has_a_budget_that_grows_with_its_size(tmp_path):
    """A big batch whose work outlasts the request timeout is committed, not rolled back and answered 503
    (which a client's retry of the same batch would meet again, for ever, on a slow disk)."""
    pm = build(f"sqlite:///{tmp_path / 'p.db'}", clock=WallClock(), deliver=False)
    pm.writer.request_timeout = 0.3
    on_changes = pm.stages.on_changes

    def slow(conn, changes, evs, now):  # the work takes twice the request timeout, whatever the machine
        time.sleep(0.6)
        on_changes(conn, changes, evs, now)
    pm.stages.on_changes = slow  # type: ignore[method-assign]
    pm.start()
    try:
        batch = native.parse(msgspec.json.encode([
            {"pipeline": f"big/p{i}", "type": "HEARTBEAT", "event_id": f"e{i}"} for i in range(2000)]), time.time())
        r = pm.writer.submit(batch).result(30)
        assert (r.accepted, r.duplicates) == (2000, 0)
        assert pm.writer.stats["timed_out"] == 0 and pm.writer.stats["abandoned"] == 0
    finally:
        pm.close()


def test_input_the_database_refuses_fails_alone_and_reloads_once(db_url):
    pm = build(db_url, clock=WallClock(), deliver=False)
    pm.start()
    try:
        assert pm.writer.submit(events({"pipeline": "a/b", "type": "HEARTBEAT", "event_id": "1"})).result(10)

        def duplicate_pipeline(conn, now):  # a constraint violation caused by this request alone
            conn.exec_driver_sql("INSERT INTO pipelines (key, namespace, name, first_seen, last_event_at) "
                                 "SELECT key, namespace, name, first_seen, last_event_at FROM pipelines")
        loads = []
        load = pm.stages.load

        def counted(conn, writer, now):
            loads.append(now)
            load(conn, writer, now)
        pm.stages.load = counted  # type: ignore[method-assign]
        with pytest.raises(Rejected) as e:
            pm.writer.call(duplicate_pipeline, timeout=10)
        assert "refused" in str(e.value)
        assert len(loads) == 1, "one reload for a refused request, not a retry loop"
        assert pm.writer.stats["outages"] == 0 and pm.writer.stats["rejected"] == 1
        r = pm.writer.submit(events({"pipeline": "a/b", "type": "HEARTBEAT", "event_id": "2"})).result(10)
        assert r.accepted == 1
    finally:
        pm.close()


class _Fatal(BaseException):
    """Stands for what no handler expects (the writer catches Exception, not this)."""


def test_a_dead_writer_takes_readyz_down_and_requests_get_503(tmp_path, caplog):
    pm = build(f"sqlite:///{tmp_path / 'p.db'}", clock=WallClock(), deliver=False)
    with TestClient(create_app(pm), raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        assert "pipemon_writer_up 1.0" in client.get("/metrics").text

        def fatal(conn, now):
            raise _Fatal("boom")
        pm.writer.submit_call(fatal)
        until(lambda: not pm.writer.alive(), "the writer thread ends")
        r = client.get("/readyz")
        assert r.status_code == 503
        assert "writer" in r.json()["failing"] and "_Fatal" in r.json()["failing"]["writer"]
        assert client.get("/healthz").status_code == 200  # the process itself is up
        post = client.post("/api/v1/events", json={"pipeline": "a/b", "type": "HEARTBEAT"})
        assert post.status_code == 503 and int(post.headers["Retry-After"]) >= 1
        assert post.json()["error"] == "storage_unavailable"
        assert "pipemon_writer_up 0.0" in client.get("/metrics").text
    assert any(r.levelname == "CRITICAL" and "writer thread died" in r.getMessage() for r in caplog.records)


def test_stall_guard_turns_a_silent_server_into_a_lost_connection(owned_db):
    from pipemon.store.db import STALL_GUARD, normalize_url
    url, proxy, _direct = owned_db
    engine = sa.create_engine(normalize_url(url))
    raw = engine.raw_connection()
    try:
        dbapi_conn = raw.dbapi_connection
        shut = STALL_GUARD.shut
        proxy.freeze()  # the server's kernel would still acknowledge TCP: no socket timeout fires
        with pytest.raises(psycopg.OperationalError), STALL_GUARD.watch(dbapi_conn, limit=1.0):
            dbapi_conn.execute("SELECT 1")
        assert STALL_GUARD.shut == shut + 1
    finally:
        proxy.restore()
        raw.invalidate()
        engine.dispose()
