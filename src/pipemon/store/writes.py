"""The write side of the store, used only by the single writer (writer/), always inside its transaction.

Rows go in with executemany: one statement per table per batch, whatever the batch size.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipemon.model import Run, RunStatus
from pipemon.store.schema import lineage, pipelines, runs

_CHUNK = 500
_JSON = msgspec.json.Encoder()
_STATUS = {s.value: s for s in RunStatus}


def _chunks(seq: Sequence, n: int = _CHUNK):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _sql(conn: Connection, sql: str) -> str:
    """Hot-path statements are written once with `?` and bound raw through the driver: SQLAlchemy's
    per-row parameter processing costs more than SQLite's own insert (12 vs 5 µs a row, measured)."""
    return sql if conn.dialect.paramstyle == "qmark" else sql.replace("?", "%s")


def insert_returning_id(conn: Connection, sql: str, params: tuple) -> int | None:
    """One single-row INSERT (written with `?`) and the new row's id, in one round trip: PostgreSQL's
    RETURNING, SQLite's lastrowid (its RETURNING needs 3.35, newer than some systems' own). None when an
    `ON CONFLICT … DO NOTHING` in `sql` inserted nothing."""
    if conn.dialect.name == "postgresql":
        return conn.exec_driver_sql(_sql(conn, sql + " RETURNING id"), params).scalar()
    res = conn.exec_driver_sql(sql, params)
    return res.lastrowid if res.rowcount else None


def existing_event_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Which of these idempotency keys are stored. A join with the keys probes the unique index key by key
    (a bare `IN (…)` lets PostgreSQL scan a young table that has no statistics yet)."""
    found: set[str] = set()
    for part in _chunks(keys):
        q = _sql(conn, f"SELECT events.key FROM (VALUES {','.join(['(?)'] * len(part))}) AS k "
                       "JOIN events ON events.key = k.column1")
        found.update(r[0] for r in conn.exec_driver_sql(q, tuple(part)))
    return found


_INSERT_EVENTS = ("INSERT INTO events (key, pipeline_id, run_id, type, source, time, received_at, body) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def insert_events(conn: Connection, rows: list[tuple]) -> None:
    """rows: (key, pipeline_id, run_id, type, source, time, received_at, body)."""
    if rows:
        conn.exec_driver_sql(_sql(conn, _INSERT_EVENTS), rows)


_PIPELINE_COLS = ("key", "namespace", "name", "team", "event_team", "integration", "first_seen",
                  "last_event_at")
_INSERT_PIPELINE = (f"INSERT INTO pipelines ({', '.join(_PIPELINE_COLS)}) "
                    f"VALUES ({', '.join('?' * len(_PIPELINE_COLS))})")


def insert_pipeline(conn: Connection, row: dict) -> int:
    pid = insert_returning_id(conn, _INSERT_PIPELINE, tuple(row[c] for c in _PIPELINE_COLS))
    assert pid is not None  # no ON CONFLICT: a conflict raises
    return pid


def update_pipelines(conn: Connection, rows: list[tuple]) -> None:
    """rows: (team, event_team, integration, last_event_at, id)."""
    if rows:
        conn.exec_driver_sql(_sql(conn, "UPDATE pipelines SET team = ?, event_team = ?, integration = ?, "
                                        "last_event_at = ? WHERE id = ?"), rows)


def load_pipelines(conn: Connection) -> list[sa.Row]:
    return list(conn.execute(sa.select(pipelines)))


# --- runs -------------------------------------------------------------------------------------------

_RUN_COLS = ("parent_run_id", "job", "status", "started_at", "ended_at", "duration", "start_seen",
             "own_events", "end_event_time", "last_event_time", "rows", "bytes", "metrics_time", "metrics",
             "error_message", "error_type", "log_excerpt", "nominal_time", "task_states", "cause")


def run_values(run: Run) -> tuple:
    """The _RUN_COLS values of a run, in order."""
    return (run.parent_run_id, run.job, run.status.value, run.started_at, run.ended_at, run.duration,
            run.start_seen, run.own_events, run.end_event_time, run.last_event_time, run.rows, run.bytes,
            run.metrics_time, _JSON.encode(run.metrics).decode() if run.metrics else None, run.error_message,
            run.error_type, run.log_excerpt, run.nominal_time,
            _JSON.encode(run.task_states).decode() if run.task_states else None, run.cause)


def run_from_row(pipeline: str, r) -> Run:
    m = r.metrics
    return Run(
        pipeline=pipeline, run_id=r.run_id, status=_STATUS[r.status], started_at=r.started_at,
        ended_at=r.ended_at, start_seen=bool(r.start_seen), end_event_time=r.end_event_time,
        last_event_time=r.last_event_time, rows=r.rows, bytes=r.bytes, metrics_time=r.metrics_time,
        metrics=msgspec.json.decode(m) if m else None,
        error_message=r.error_message, error_type=r.error_type, log_excerpt=r.log_excerpt,
        nominal_time=r.nominal_time, parent_run_id=r.parent_run_id, job=r.job, own_events=bool(r.own_events),
        task_states=msgspec.json.decode(r.task_states) if r.task_states else None, cause=r.cause,
    )


_INSERT_RUNS = (f"INSERT INTO runs (pipeline_id, run_id, {', '.join(_RUN_COLS)}) "
                f"VALUES ({', '.join('?' * (len(_RUN_COLS) + 2))})")
_UPDATE_RUNS = (f"UPDATE runs SET {', '.join(c + ' = ?' for c in _RUN_COLS)} "
                "WHERE pipeline_id = ? AND run_id = ?")


def insert_runs(conn: Connection, runs_: list[tuple[int, Run]]) -> None:
    if runs_:
        conn.exec_driver_sql(_sql(conn, _INSERT_RUNS), [(pid, r.run_id, *run_values(r)) for pid, r in runs_])


def update_runs(conn: Connection, runs_: list[tuple[int, Run]]) -> None:
    if runs_:
        conn.exec_driver_sql(_sql(conn, _UPDATE_RUNS), [(*run_values(r), pid, r.run_id) for pid, r in runs_])


_RUN_SELECT = f"SELECT pipeline_id, run_id, {', '.join(_RUN_COLS)} FROM runs"


class _RunRow:
    """A runs row read raw (attribute access like SQLAlchemy's Row, without its cost)."""

    __slots__ = ("pipeline_id", "run_id", *_RUN_COLS)
    pipeline_id: int  # declared for the type checker: set from the row in __init__, like the _RUN_COLS
    run_id: str

    def __init__(self, values: tuple) -> None:
        for k, v in zip(self.__slots__, values):
            setattr(self, k, v)


def load_runs(conn: Connection, wanted: Iterable[tuple[int, str]]) -> dict[tuple[int, str], _RunRow]:
    """The stored rows of these (pipeline_id, run_id) pairs."""
    # A join with the keys on the unique (pipeline_id, run_id) index, probed key by key on both backends:
    # PostgreSQL keeps to the index even before a young table has statistics (a bare `run_id IN (…)`
    # made it scan the table), and SQLite does too (a row-value `IN (VALUES …)` made *it* scan).
    keys = sorted(set(wanted))
    out = {}
    for part in _chunks(keys, 250):
        q = _sql(conn, f"SELECT runs.pipeline_id, runs.run_id, {', '.join('runs.' + c for c in _RUN_COLS)} "
                       f"FROM (VALUES {','.join(['(?, ?)'] * len(part))}) AS k JOIN runs "
                       "ON runs.pipeline_id = k.column1 AND runs.run_id = k.column2")
        for values in conn.exec_driver_sql(q, tuple(x for k in part for x in k)):
            r = _RunRow(values)
            out[(r.pipeline_id, r.run_id)] = r
    return out


def find_task_parents(conn: Connection, run_ids: Sequence[str]) -> dict[str, tuple[int, str | None]]:
    """For runs that already exist as some pipeline's run or task: run_id -> (pipeline_id, parent_run_id)."""
    out = {}
    for part in _chunks(list(run_ids)):
        q = _sql(conn, f"SELECT run_id, pipeline_id, parent_run_id FROM runs WHERE run_id IN "
                       f"({','.join('?' * len(part))})")
        for run_id, pid, parent in conn.exec_driver_sql(q, tuple(part)):
            out[run_id] = (pid, parent)
    return out


def load_tasks(conn: Connection, pipeline_id: int, parent_run_id: str) -> list[_RunRow]:
    q = _sql(conn, f"{_RUN_SELECT} WHERE pipeline_id = ? AND parent_run_id = ?")
    return [_RunRow(v) for v in conn.exec_driver_sql(q, (pipeline_id, parent_run_id))]


def open_runs(conn: Connection) -> list[sa.Row]:
    """Every run still running (top-level and tasks), oldest first: the writer's start-up state."""
    return list(conn.execute(sa.select(runs).where(runs.c.status == RunStatus.RUNNING.value)
                             .order_by(runs.c.started_at)))


# --- lineage ----------------------------------------------------------------------------------------

def load_lineage(conn: Connection) -> list[sa.Row]:
    return list(conn.execute(sa.select(lineage.c.pipeline_id, lineage.c.dataset, lineage.c.role)))


def insert_lineage(conn: Connection, rows: list[dict]) -> None:
    """rows: {pipeline_id, dataset, role, last_seen}; new edges only (the writer knows which are new)."""
    if rows:
        conn.exec_driver_sql(_sql(conn, "INSERT INTO lineage (pipeline_id, dataset, role, last_seen) "
                                        "VALUES (?, ?, ?, ?)"),
                             [(r["pipeline_id"], r["dataset"], r["role"], r["last_seen"]) for r in rows])
