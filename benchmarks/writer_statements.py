#!/usr/bin/env python3
"""The writer's commit, counted: the SQL statements (each a round trip to PostgreSQL) of one writer
transaction, for the cases on the FAIL → webhook path, on SQLite and PostgreSQL.

  new FAIL        an OpenLineage FAIL of a pipeline never seen (what `cluster.py --phases latency` sends)
  new START       an OpenLineage START of a pipeline never seen
  new START→FAIL  the FAIL that follows it (the run is open, cached)
  known START     a START of a pipeline with history (a new run of a known pipeline)
  known FAIL      the FAIL that follows it
  known COMPLETE  START then COMPLETE of a known pipeline: the COMPLETE's commit

The writer runs inline (no threads), with one webhook receiver and group_wait 0s, so a FAIL opens an
alert and writes its notification in the same transaction; each event names one output dataset (a new
pipeline's first event then stores a lineage edge), as `cluster.py`'s do. Counts are statements as the
driver sees them (SQLAlchemy's `before_cursor_execute`; an executemany is one), plus BEGIN and COMMIT;
round trips count a run of statements sent in psycopg's pipeline mode as one. A count is
deterministic, unlike a time: the writer's time-based flushes (`TOUCH_FLUSH_S`, `VIEW_FLUSH_S`) are held
off here by running the cases within a second of each other (the first commit of a process flushes).

    python benchmarks/writer_statements.py [--db postgresql+psycopg://…] [--sql]

With --db, a schema of its own is made and dropped; without, SQLite and (if PIPEMON_TEST_POSTGRES_URL is
set) PostgreSQL. --sql prints each statement's first line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from datetime import datetime, timezone

import sqlalchemy as sa

from pipemon.app import build
from pipemon.clock import FakeClock
from pipemon.config import loads
from pipemon.ingest import openlineage

CONFIG = """
receivers:
  - name: hook
    webhook: {url: "http://127.0.0.1:9/hook"}
route:
  receiver: hook
  group_by: [pipeline]
  group_wait: 0s
"""
T0 = 1_790_000_000.0


def ol(kind: str, name: str, run_id: str, t: float) -> bytes:
    when = datetime.fromtimestamp(t, timezone.utc).isoformat()
    run: dict = {"runId": run_id, "facets": {}}
    if kind == "FAIL":
        run["facets"]["errorMessage"] = {"_producer": "x", "_schemaURL": "y", "message": "boom",
                                         "programmingLanguage": "python"}
    return json.dumps({
        "eventTime": when, "eventType": kind, "producer": "https://example.com/bench",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent", "run": run,
        "job": {"namespace": "latency", "name": name, "facets": {}}, "inputs": [],
        "outputs": [{"namespace": "s3://bench", "name": f"latency/{name}/out", "facets": {}}]}).encode()


class Counter:
    """Statements on an engine, with BEGIN and COMMIT, while `on`."""

    def __init__(self, engine: sa.Engine) -> None:
        self.on = False
        self.seen: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", self._stmt)
        sa.event.listen(engine, "begin", lambda conn: self._add("BEGIN"))
        sa.event.listen(engine, "commit", lambda conn: self._add("COMMIT"))
        # INSERT … RETURNING queued in psycopg's pipeline goes by the driver's cursor, which SQLAlchemy's
        # events do not see: count it where the store sends it
        from pipemon.store import alerting
        inner = alerting.insert_returning_id

        def counted(conn, sql: str, params: tuple):
            if conn.info.get("pipelined") is not None:
                self._add(f"[piped {self.block}] " + " ".join((sql + " RETURNING id").split())[:100])
            return inner(conn, sql, params)
        alerting.insert_returning_id = counted  # type: ignore[assignment]
        # each pipelined block is one round trip (its sync): number them
        from contextlib import contextmanager

        from pipemon.store import writes
        block = writes.pipelined
        self.block = 0

        @contextmanager
        def numbered(conn):
            self.block += 1
            with block(conn):
                yield
        writes.pipelined = numbered  # type: ignore[assignment]

    def _add(self, what: str) -> None:
        if self.on:
            self.seen.append(what)

    def _stmt(self, conn, cursor, statement, parameters, context, executemany) -> None:
        first = " ".join(statement.split())[:100]
        piped = getattr(conn.connection.driver_connection, "_pipeline", None) is not None  # psycopg's
        self._add((f"[piped {self.block}] " if piped else "") + ("[many] " if executemany else "") + first)


def round_trips(stmts: list[str]) -> int:
    """Statements sent one by one, each waiting for its answer; a pipelined block's are one."""
    n, prev = 0, None
    for s in stmts:
        block = s.split("]", 1)[0] if s.startswith("[piped ") else None
        n += block is None or block != prev
        prev = block
    return n


def count_cases(db_url: str) -> dict[str, list[str]]:
    """Each case's statements, in order, on a fresh database."""
    clock = FakeClock(T0)
    pm = build(db_url, loads(CONFIG), clock=clock, deliver=False)
    try:
        counter = Counter(pm.db)
        w = pm.writer

        def commit(kind: str, name: str, run_id: str) -> list[str]:
            clock.set(clock.now() + 60)
            events = openlineage.parse(ol(kind, name, run_id, clock.now()), clock.now())
            counter.seen, counter.on = [], True
            try:
                w.ingest(events)
            finally:
                counter.on = False
            return counter.seen

        # a known pipeline: a history of good runs, then the writer's flushes made due and done
        for i in range(5):
            rid = str(uuid.uuid4())
            commit("START", "known", rid)
            commit("COMPLETE", "known", rid)
        w.tick()
        commit("START", "warmup", str(uuid.uuid4()))  # the first ingest's own flushes, out of the way
        out = {}
        out["new FAIL"] = commit("FAIL", f"new-{uuid.uuid4().hex[:6]}", str(uuid.uuid4()))
        name, rid = f"new-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
        out["new START"] = commit("START", name, rid)
        out["new START→FAIL"] = commit("FAIL", name, rid)
        rid = str(uuid.uuid4())
        out["known START"] = commit("START", "known", rid)
        out["known FAIL"] = commit("FAIL", "known", rid)
        rid = str(uuid.uuid4())
        commit("START", "known", rid)
        out["known COMPLETE"] = commit("COMPLETE", "known", rid)
        return out
    finally:
        pm.close()


def pg_schema(base: str):
    """A schema of its own on PostgreSQL: (url, drop)."""
    from pipemon.store.db import normalize_url
    schema = f"ws_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalize_url(base))
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"

    def drop() -> None:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
    return f"{normalize_url(base)}{sep}options=-csearch_path%3D{schema}", drop


def run(backend: str, url: str, show_sql: bool) -> dict[str, int]:
    cases = count_cases(url)
    print(f"\n### {backend}: per writer commit (BEGIN and COMMIT included)\n")
    print(f"{'case':16} statements  round trips")
    for name, stmts in cases.items():
        print(f"{name:16} {len(stmts):10d}  {round_trips(stmts):11d}")
        if show_sql:
            for s in stmts:
                print(f"    {s}")
    return {k: len(v) for k, v in cases.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", help="a PostgreSQL URL (a schema of its own is made) or a SQLite URL")
    ap.add_argument("--sql", action="store_true", help="print each statement")
    a = ap.parse_args()
    targets = []
    if a.db:
        targets.append(a.db)
    else:
        targets.append("sqlite")
        if os.environ.get("PIPEMON_TEST_POSTGRES_URL"):
            targets.append(os.environ["PIPEMON_TEST_POSTGRES_URL"])
    for t in targets:
        if t == "sqlite" or t.startswith("sqlite"):
            with tempfile.TemporaryDirectory() as d:
                run("SQLite", t if t != "sqlite" else f"sqlite:///{d}/pipemon.db", a.sql)
        else:
            url, drop = pg_schema(t)
            try:
                run("PostgreSQL", url, a.sql)
            finally:
                drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
