"""Store maintenance on PostgreSQL: planner statistics and vacuum of churning tables where autovacuum is off."""
from __future__ import annotations

import time

import pytest

from pipemon.store import db, maintenance


@pytest.fixture
def pg_engine(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite plans without statistics and needs no vacuum")
    engine = db.open_engine(db_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def _stat(engine, table: str, column: str):
    with engine.connect() as c:
        return c.exec_driver_sql(f"SELECT {column} FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                                 "AND relname = %s", (table,)).scalar()


def test_churning_tables_are_vacuumed_and_growing_ones_analyzed_when_autovacuum_is_off(pg_engine):
    with pg_engine.connect() as c:
        if c.exec_driver_sql("SELECT current_setting('autovacuum')").scalar() == "on":
            pytest.skip("autovacuum is on here: pipemon leaves vacuuming to it")
    with pg_engine.begin() as c:
        c.exec_driver_sql("INSERT INTO pipelines (key, namespace, name, first_seen, last_event_at) "
                          "SELECT 'm/p' || i, 'm', 'p' || i, 0, 0 FROM generate_series(1, 2000) i")
        c.exec_driver_sql("INSERT INTO pipeline_state (pipeline_id, state, reason, state_since, view, updated_at) "
                          "SELECT id, 'healthy', '', 0, '{}', 0 FROM pipelines")
    for _ in range(3):  # every view rewritten three times: dead versions outnumber live rows
        with pg_engine.begin() as c:
            c.exec_driver_sql("UPDATE pipeline_state SET updated_at = updated_at + 1")
    deadline = time.monotonic() + 10
    while (_stat(pg_engine, "pipeline_state", "n_dead_tup") or 0) < 2000 and time.monotonic() < deadline:
        time.sleep(0.2)  # the statistics collector reports a moment later
    assert maintenance.vacuum_if_needed(pg_engine) == ["pipeline_state"]
    assert _stat(pg_engine, "pipeline_state", "last_vacuum") is not None
    with pg_engine.begin() as c:
        assert "pipelines" not in maintenance.refresh_statistics(c)  # not a hot table
        assert "pipeline_state" not in maintenance.refresh_statistics(c)  # just analyzed by the vacuum
