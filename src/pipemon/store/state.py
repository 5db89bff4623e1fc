"""Persisting the engine's output: health views, findings, rollups, checkpoints (writer thread only)."""
from __future__ import annotations

from collections.abc import Iterable

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipemon.engine.detect import Finding
from pipemon.store.schema import engine_state, findings
from pipemon.store.writes import _sql

_ENC = msgspec.json.Encoder()


def dumps(obj) -> str:
    return _ENC.encode(obj).decode()


_UPSERT_VIEW = ("INSERT INTO pipeline_state (pipeline_id, state, reason, state_since, view, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pipeline_id) DO UPDATE SET state = excluded.state, "
                "reason = excluded.reason, state_since = excluded.state_since, view = excluded.view, "
                "updated_at = excluded.updated_at")


def upsert_views(conn: Connection, rows: list[tuple[int, str, str, float, str, float]]) -> None:
    """rows: (pipeline_id, state, reason, state_since, view JSON, updated_at)."""
    if rows:
        conn.exec_driver_sql(_sql(conn, _UPSERT_VIEW), rows)


_SAVE_STATE = ("INSERT INTO engine_state (health, detect, pipeline_id) VALUES (?, ?, ?) "
               "ON CONFLICT (pipeline_id) DO UPDATE SET health = excluded.health, detect = excluded.detect")


def save_engine_state(conn: Connection, rows: list[tuple[str, str, int]]) -> None:
    """rows: (health JSON, detect JSON, pipeline_id)."""
    if rows:
        conn.exec_driver_sql(_sql(conn, _SAVE_STATE), rows)


def load_engine_state(conn: Connection) -> list[sa.Row]:
    return list(conn.execute(sa.select(engine_state.c.pipeline_id, engine_state.c.health,
                                       engine_state.c.detect)))


_INSERT_FINDING = ("INSERT INTO findings (pipeline_id, kind, metric, time, run_id, observed, expected, "
                   "lower, upper, score, direction, explanation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def insert_findings(conn: Connection, rows: Iterable[tuple[int, Finding]]) -> None:
    values = [(pid, f.kind.value, f.metric, f.time, f.run_id, f.observed, f.expected, f.lower, f.upper,
               f.score, f.direction.value if f.direction else None, f.explanation) for pid, f in rows]
    if values:
        conn.exec_driver_sql(_sql(conn, _INSERT_FINDING), values)


def upsert_rollups(conn: Connection, rows: list[tuple]) -> None:
    """rows: (pipeline_id, period, start, runs, succeeded, failed, duration_sum, duration_max, rows_sum,
    bytes_sum), added to what is stored."""
    if not rows:
        return
    greatest = "max" if conn.dialect.name == "sqlite" else "GREATEST"
    conn.exec_driver_sql(_sql(conn, (
        "INSERT INTO rollups (pipeline_id, period, start, runs, succeeded, failed, duration_sum, "
        "duration_max, rows_sum, bytes_sum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (pipeline_id, period, start) DO UPDATE SET runs = rollups.runs + excluded.runs, "
        "succeeded = rollups.succeeded + excluded.succeeded, failed = rollups.failed + excluded.failed, "
        "duration_sum = rollups.duration_sum + excluded.duration_sum, "
        f"duration_max = {greatest}(rollups.duration_max, excluded.duration_max), "
        "rows_sum = rollups.rows_sum + excluded.rows_sum, "
        "bytes_sum = rollups.bytes_sum + excluded.bytes_sum")),
        rows)


def max_event_id(conn: Connection) -> int:
    return conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM events").scalar_one()


def get_checkpoint(conn: Connection, name: str) -> int:
    v = conn.exec_driver_sql(_sql(conn, "SELECT event_id FROM checkpoints WHERE name = ?"), (name,)).scalar()
    return int(v or 0)


def set_checkpoint(conn: Connection, name: str, event_id: int, now: float) -> None:
    conn.exec_driver_sql(_sql(conn, "INSERT INTO checkpoints (name, event_id, time) VALUES (?, ?, ?) "
                                    "ON CONFLICT (name) DO UPDATE SET event_id = excluded.event_id, "
                                    "time = excluded.time"), (name, event_id, now))


def runs_touched_since(conn: Connection, event_id: int) -> list[tuple[int, str]]:
    """(pipeline_id, run_id) of the events stored after a checkpoint, for replay after a restart."""
    rows = conn.exec_driver_sql(_sql(conn, "SELECT DISTINCT pipeline_id, run_id FROM events WHERE id > ? "
                                           "AND run_id <> ''"), (event_id,))
    return [(r[0], r[1]) for r in rows]


def set_verdict(conn: Connection, finding_id: int, verdict: str, now: float) -> sa.Row | None:
    conn.execute(sa.update(findings).where(findings.c.id == finding_id)
                 .values(verdict=verdict, verdict_at=now))
    return conn.execute(sa.select(findings).where(findings.c.id == finding_id)).first()
