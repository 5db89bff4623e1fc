"""The writer's commit on the FAIL → webhook path stays within a number of statements (each a round trip to
PostgreSQL), and still stores the event, its run, the alert and its notification in that one transaction.
A count is deterministic (unlike a time); `benchmarks/writer_statements.py` prints the statements."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from pipemon.app import build
from pipemon.clock import FakeClock
from pipemon.config import loads
from pipemon.ingest import openlineage

from ..conftest import T0

CONFIG = """
receivers:
  - name: hook
    webhook: {url: "http://127.0.0.1:9/hook"}
route:
  receiver: hook
  group_by: [pipeline]
  group_wait: 0s
"""


def ol(kind: str, name: str, run_id: str, t: str) -> bytes:
    run: dict = {"runId": run_id, "facets": {}}
    if kind == "FAIL":
        run["facets"]["errorMessage"] = {"_producer": "x", "_schemaURL": "y", "message": "boom",
                                         "programmingLanguage": "python"}
    return json.dumps({
        "eventTime": t, "eventType": kind, "producer": "https://example.com/t",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent", "run": run,
        "job": {"namespace": "ns", "name": name, "facets": {}}, "inputs": [],
        "outputs": [{"namespace": "s3://b", "name": f"{name}/out", "facets": {}}]}).encode()


@pytest.fixture
def counted(db_url, monkeypatch):
    clock = FakeClock(T0)
    pm = build(db_url, loads(CONFIG), clock=clock, deliver=False)
    seen: list[str] = []
    on = [False]

    def stmt(conn, cursor, statement, parameters, context, executemany):
        # last_event_at is flushed every TOUCH_FLUSH_S of wall time: whether it falls in this commit is timing
        if on[0] and not statement.startswith("UPDATE pipelines SET"):
            seen.append(statement)
    sa.event.listen(pm.db, "before_cursor_execute", stmt)
    from pipemon.store import alerting
    inner = alerting.insert_returning_id

    def returning(conn, sql, params):  # queued in psycopg's pipeline by the driver's cursor: no event
        if on[0] and conn.info.get("pipelined") is not None:
            seen.append(sql)
        return inner(conn, sql, params)
    monkeypatch.setattr(alerting, "insert_returning_id", returning)

    def commit(kind: str, name: str, run_id: str) -> list[str]:
        clock.set(clock.now() + 60)
        t = clock.now()
        when = datetime.fromtimestamp(t, timezone.utc).isoformat()
        events = openlineage.parse(ol(kind, name, run_id, when), t)
        seen.clear()
        on[0] = True
        try:
            pm.writer.ingest(events)
        finally:
            on[0] = False
        return list(seen)
    yield pm, commit
    pm.close()


def test_a_fail_commits_in_few_statements(counted):
    pm, commit = counted
    for _ in range(3):
        rid = str(uuid.uuid4())
        commit("START", "known", rid)
        commit("COMPLETE", "known", rid)
    pm.writer.tick()
    commit("START", "warmup", str(uuid.uuid4()))

    new = commit("FAIL", "new", str(uuid.uuid4()))
    # dedup, pipeline, events, runs, lineage, view, alert, notification, dispatch state (was 15)
    assert len(new) <= 9, new
    rid = str(uuid.uuid4())
    assert len(commit("START", "known", rid)) <= 4
    known = commit("FAIL", "known", rid)
    assert len(known) <= 8, known  # dedup, tasks, events, run, view, alert, notification, dispatch (was 12)
    rid = str(uuid.uuid4())
    commit("START", "known", rid)
    assert len(commit("COMPLETE", "known", rid)) <= 6

    with pm.db.connect() as c:  # what the FAILs stored, each in its own commit: alert and outbox row
        alerts = c.exec_driver_sql("SELECT pipeline, state, body FROM alerts ORDER BY id").all()
        assert [(a[0], a[1]) for a in alerts] == [("ns/new", "firing"), ("ns/known", "resolved")]
        assert all(json.loads(a[2])["output"] is None or isinstance(json.loads(a[2])["output"], str)
                   for a in alerts)
        notes = c.exec_driver_sql("SELECT body, status FROM notifications ORDER BY id").all()
        assert [n[1] for n in notes] == ["pending", "pending"]  # the FAILs (a resolution waits)
        fps = c.exec_driver_sql("SELECT fingerprint FROM alerts ORDER BY id").scalars().all()
        assert [[v["fingerprint"] for v in json.loads(n[0])["alerts"]] for n in notes] == [[fp] for fp in fps]
        # stored once, after the dispatch marked it: the row holds the alert as the writer holds it (but for
        # the body's copy of the id, unknown before the INSERT: readers take the row's id)
        firing = pm.alerts.book.open[fps[0]]
        assert json.loads(alerts[0][2]) == {**json.loads(json.dumps(firing.to_json())), "id": None}
        assert c.exec_driver_sql("SELECT count(*) FROM runs WHERE status = 'failed'").scalar() == 2
