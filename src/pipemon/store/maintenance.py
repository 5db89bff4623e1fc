"""Keeping the store fast as it grows: planner statistics on PostgreSQL, retention on both backends.

PostgreSQL plans from statistics that autovacuum's ANALYZE keeps current. Where autovacuum is off, or
behind a table growing by thousands of rows a second, a young table has none, the planner takes it for
tiny, and the writer's key lookups turn into scans of millions of rows (measured: 2,400 events/s falling
to a few hundred). So the writer analyzes its busiest tables itself when they have changed by a tenth.
"""
from __future__ import annotations

import logging

from sqlalchemy.engine import Connection

from pipemon.model import DeliveryStatus
from pipemon.store.db import unbounded  # VACUUM may outlast the statement timeout on purpose

log = logging.getLogger(__name__)
HOT_TABLES = ("events", "runs", "pipeline_state", "lineage", "alerts", "notifications")
# Small tables rewritten in place all the time: without vacuum their dead row versions pile up and every
# read of them wades through it (measured: the fleet summary on PostgreSQL went from 3 ms to 700 ms).
CHURN_TABLES = ("pipeline_state", "engine_state", "engine_blobs", "checkpoints")


def refresh_statistics(conn: Connection) -> list[str]:
    """ANALYZE the hot tables that changed by more than 10 % (and 1,000 rows) since their last analyze."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.exec_driver_sql(
        "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY(%s) "
        "AND n_mod_since_analyze > GREATEST(1000, 0.1 * n_live_tup)", (list(HOT_TABLES),)).all()
    done = []
    for (table,) in rows:
        conn.exec_driver_sql(f"ANALYZE {table}")  # a name from HOT_TABLES, not from input
        done.append(table)
    if done:
        log.info("analyzed %s", ", ".join(done))
    return done


def vacuum_if_needed(engine) -> list[str]:
    """Where autovacuum is off, VACUUM the churning tables once dead rows outnumber live ones. VACUUM cannot
    run in a transaction, so this takes a connection of its own in autocommit mode."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        if conn.exec_driver_sql("SELECT current_setting('autovacuum')").scalar() == "on":
            return []
        rows = conn.exec_driver_sql(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
            "AND relname = ANY(%s) AND n_dead_tup > GREATEST(1000, n_live_tup)", (list(CHURN_TABLES),)).all()
    done = []
    if rows:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn, unbounded(conn):
            for (table,) in rows:
                conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")  # a name from CHURN_TABLES
                done.append(table)
        log.info("vacuumed %s (autovacuum is off)", ", ".join(done))
    return done


def first_event_id_after(conn: Connection, cutoff: float) -> int | None:
    """The first event received at or after `cutoff`. Ids grow with arrival (one writer), so a binary
    search over ids finds it without an index on the time."""
    lo, hi = conn.exec_driver_sql("SELECT MIN(id), MAX(id) FROM events").one()
    if lo is None:
        return None
    q = "SELECT id, received_at FROM events WHERE id >= {} ORDER BY id LIMIT 1"
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.exec_driver_sql(q.format(int(mid))).first()
        if row is None or row[1] >= cutoff:
            hi = mid
        else:
            lo = row[0] + 1
    row = conn.exec_driver_sql(q.format(int(lo))).first()
    return row[0] if row is not None and row[1] >= cutoff else None


def apply_retention(conn: Connection, cutoff: float, pipeline_ids: list[int],
                    chunk: int = 20_000) -> dict[str, int]:
    """Delete what is older than `cutoff`: events (by id range, a chunk at a time), and for the given
    pipelines their finished runs, findings and hourly rollups (daily rollups are kept for long windows);
    resolved alerts and delivered notifications. Every delete walks an index."""
    deleted = {}
    first_kept = first_event_id_after(conn, cutoff)
    low = conn.exec_driver_sql("SELECT MIN(id) FROM events").scalar()
    if low is not None:
        stop = (first_kept if first_kept is not None
                else conn.exec_driver_sql("SELECT MAX(id) + 1 FROM events").scalar())
        upto = min(stop, low + chunk)
        deleted["events"] = conn.exec_driver_sql(f"DELETE FROM events WHERE id < {int(upto)}").rowcount
    p = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    n_runs = n_findings = n_rollups = 0
    for pid in pipeline_ids:
        n_runs += conn.exec_driver_sql(f"DELETE FROM runs WHERE pipeline_id = {p} AND started_at < {p} "
                                       "AND status <> 'running'", (pid, cutoff)).rowcount
        n_findings += conn.exec_driver_sql(f"DELETE FROM findings WHERE pipeline_id = {p} AND time < {p}",
                                           (pid, cutoff)).rowcount
        n_rollups += conn.exec_driver_sql(f"DELETE FROM rollups WHERE pipeline_id = {p} AND period = 'h' "
                                          f"AND start < {p}", (pid, cutoff)).rowcount
    deleted.update(runs=n_runs, findings=n_findings, rollups=n_rollups)
    deleted["alerts"] = conn.exec_driver_sql(
        f"DELETE FROM alerts WHERE started_at < {p} AND state = 'resolved'", (cutoff,)).rowcount
    deleted["notifications"] = conn.exec_driver_sql(
        f"DELETE FROM notifications WHERE created_at < {p} AND status <> {p}",
        (cutoff, DeliveryStatus.PENDING.value)).rowcount
    return deleted
