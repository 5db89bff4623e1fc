"""The read side of the store: what the API and dashboard ask, each answered by an indexed query.

Keyset ("cursor") pagination everywhere: a page costs the same at the end of ten million runs as at
the start, unlike OFFSET.

Every read takes `scope`, the caller's team (`access.Caller.scope()`; None: the whole organisation), and
puts it in its WHERE clause through `in_scope`: another team's record is never loaded, so it answers
exactly as a missing one (404, the same message) and never counts in a list or a total.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipemon.errors import BadRequest, Conflict, NotFound
from pipemon.model import Run
from pipemon.store.schema import findings, lineage, pipeline_state, pipelines, rollups, runs
from pipemon.store.writes import run_from_row


@dataclass(frozen=True)
class Page:
    items: list
    next_cursor: str | None


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, n: int) -> list:
    try:
        pad = "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(cursor + pad))
        if isinstance(parts, list) and len(parts) == n:
            return parts
    except (ValueError, TypeError):
        pass
    raise BadRequest("invalid cursor: pass back the next_cursor of the previous page unchanged")


def in_scope(team: sa.ColumnElement, scope: str | None) -> sa.ColumnElement[bool]:
    """The one rule of isolation, as a WHERE clause: a team-scoped caller sees its team's rows only."""
    return sa.true() if scope is None else team == scope


def pipeline_row(conn: Connection, key: str, scope: str | None = None) -> sa.Row:
    row = conn.execute(sa.select(pipelines).where(pipelines.c.key == key,
                                                  in_scope(pipelines.c.team, scope))).first()
    if row is None:
        raise NotFound(f"no pipeline {key!r}")
    return row


def list_runs(conn: Connection, pipeline_id: int, pipeline: str, *, limit: int = 50,
              cursor: str | None = None, since: float | None = None, status: str | None = None,
              tasks: bool = False) -> Page:
    """A pipeline's runs, newest first (top-level runs unless tasks=True)."""
    q = sa.select(runs).where(runs.c.pipeline_id == pipeline_id)
    if not tasks:
        q = q.where(runs.c.parent_run_id.is_(None))
    if since is not None:
        q = q.where(runs.c.started_at >= since)
    if status is not None:
        q = q.where(runs.c.status == status)
    if cursor:
        started, rid = decode_cursor(cursor, 2)
        q = q.where(sa.or_(runs.c.started_at < started,
                           sa.and_(runs.c.started_at == started, runs.c.id < rid)))
    rows = list(conn.execute(q.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit + 1)))
    nxt = encode_cursor(rows[limit - 1].started_at, rows[limit - 1].id) if len(rows) > limit else None
    return Page([run_from_row(pipeline, r) for r in rows[:limit]], nxt)


def find_run(conn: Connection, run_id: str, pipeline: str | None = None,
             scope: str | None = None) -> tuple[Run, list[Run]]:
    """A run by its id, with its tasks. A run id shared by runs of several pipelines needs `pipeline`."""
    q = sa.select(runs, pipelines.c.key).join(pipelines, pipelines.c.id == runs.c.pipeline_id) \
        .where(runs.c.run_id == run_id, in_scope(pipelines.c.team, scope))
    if pipeline is not None:
        q = q.where(pipelines.c.key == pipeline)
    rows = list(conn.execute(q.limit(20)))
    if not rows:
        raise NotFound(f"no run {run_id!r}" + (f" in pipeline {pipeline!r}" if pipeline else ""))
    if len(rows) > 1:
        raise Conflict(f"run id {run_id!r} belongs to several pipelines ("
                       + ", ".join(sorted(r.key for r in rows)) + "); add ?pipeline=namespace/name")
    r = rows[0]
    run = run_from_row(r.key, r)
    task_rows = conn.execute(sa.select(runs).where(runs.c.pipeline_id == r.pipeline_id,
                                                   runs.c.parent_run_id == run_id)
                             .order_by(runs.c.started_at))
    return run, [run_from_row(r.key, t) for t in task_rows]


def last_runs(conn: Connection, pipeline_ids: list[int]) -> dict[int, Run]:
    """The latest top-level run of each pipeline (one indexed probe per pipeline)."""
    out = {}
    for pid in pipeline_ids:
        r = conn.execute(sa.select(runs, pipelines.c.key)
                         .join(pipelines, pipelines.c.id == runs.c.pipeline_id)
                         .where(runs.c.pipeline_id == pid, runs.c.parent_run_id.is_(None))
                         .order_by(runs.c.started_at.desc()).limit(1)).first()
        if r is not None:
            out[pid] = run_from_row(r.key, r)
    return out


def datasets(conn: Connection, pipeline_id: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"inputs": [], "outputs": []}
    for r in conn.execute(sa.select(lineage.c.dataset, lineage.c.role)
                          .where(lineage.c.pipeline_id == pipeline_id)
                          .order_by(lineage.c.dataset)):
        out["inputs" if r.role == "in" else "outputs"].append(r.dataset)
    return out


def list_pipelines(conn: Connection, *, team: str | None = None, q: str | None = None,
                   states: list[str] | None = None, limit: int = 100, cursor: str | None = None,
                   scope: str | None = None) -> Page:
    """Pipelines with their health row, by id (keyset on the key)."""
    stmt = sa.select(pipelines, pipeline_state.c.state, pipeline_state.c.reason, pipeline_state.c.state_since,
                     pipeline_state.c.view).select_from(
        pipelines.outerjoin(pipeline_state, pipeline_state.c.pipeline_id == pipelines.c.id)) \
        .where(in_scope(pipelines.c.team, scope))
    if team is not None:
        stmt = stmt.where(pipelines.c.team == team)
    if q:
        stmt = stmt.where(pipelines.c.key.contains(q, autoescape=True))
    if states:
        stmt = stmt.where(sa.func.coalesce(pipeline_state.c.state, "unknown").in_(states))
    if cursor:
        (after,) = decode_cursor(cursor, 1)
        stmt = stmt.where(pipelines.c.key > after)
    rows = list(conn.execute(stmt.order_by(pipelines.c.key).limit(limit + 1)))
    nxt = encode_cursor(rows[limit - 1].key) if len(rows) > limit else None
    return Page(rows[:limit], nxt)


def pipeline_with_state(conn: Connection, key: str, scope: str | None = None) -> sa.Row:
    row = conn.execute(sa.select(pipelines, pipeline_state.c.state, pipeline_state.c.reason,
                                 pipeline_state.c.state_since, pipeline_state.c.view).select_from(
        pipelines.outerjoin(pipeline_state, pipeline_state.c.pipeline_id == pipelines.c.id))
        .where(pipelines.c.key == key, in_scope(pipelines.c.team, scope))).first()
    if row is None:
        raise NotFound(f"no pipeline {key!r}")
    return row


def state_counts(conn: Connection, team: str | None = None,
                 scope: str | None = None) -> list[tuple[str | None, str, int]]:
    """(team, state, pipelines): the fleet summary, one GROUP BY over the state rows."""
    state = sa.func.coalesce(pipeline_state.c.state, "unknown")
    stmt = sa.select(pipelines.c.team, state, sa.func.count()).select_from(
        pipelines.outerjoin(pipeline_state, pipeline_state.c.pipeline_id == pipelines.c.id)
    ).where(in_scope(pipelines.c.team, scope)).group_by(pipelines.c.team, state)
    if team is not None:
        stmt = stmt.where(pipelines.c.team == team)
    return [(r[0], r[1], r[2]) for r in conn.execute(stmt)]


def recent_findings(conn: Connection, pipeline_id: int, limit: int = 20) -> list[sa.Row]:
    return list(conn.execute(sa.select(findings).where(findings.c.pipeline_id == pipeline_id)
                             .order_by(findings.c.time.desc(), findings.c.id.desc()).limit(limit)))


def finding(conn: Connection, finding_id: int, scope: str | None = None) -> sa.Row:
    row = conn.execute(sa.select(findings, pipelines.c.key)
                       .join(pipelines, pipelines.c.id == findings.c.pipeline_id)
                       .where(findings.c.id == finding_id, in_scope(pipelines.c.team, scope))).first()
    if row is None:
        raise NotFound(f"no finding {finding_id}")
    return row


def list_findings(conn: Connection, *, pipeline_id: int | None = None, team: str | None = None,
                  since: float | None = None, limit: int = 100, cursor: str | None = None,
                  scope: str | None = None) -> Page:
    stmt = sa.select(findings, pipelines.c.key, pipelines.c.team).join(
        pipelines, pipelines.c.id == findings.c.pipeline_id).where(in_scope(pipelines.c.team, scope))
    if pipeline_id is not None:
        stmt = stmt.where(findings.c.pipeline_id == pipeline_id)
    if team is not None:
        stmt = stmt.where(pipelines.c.team == team)
    if since is not None:
        stmt = stmt.where(findings.c.time >= since)
    if cursor:
        t, fid = decode_cursor(cursor, 2)
        stmt = stmt.where(sa.or_(findings.c.time < t, sa.and_(findings.c.time == t, findings.c.id < fid)))
    rows = list(conn.execute(stmt.order_by(findings.c.time.desc(), findings.c.id.desc()).limit(limit + 1)))
    nxt = encode_cursor(rows[limit - 1].time, rows[limit - 1].id) if len(rows) > limit else None
    return Page(rows[:limit], nxt)


def rollup_rows(conn: Connection, pipeline_id: int, period: str, since: float) -> list[sa.Row]:
    return list(conn.execute(sa.select(rollups).where(rollups.c.pipeline_id == pipeline_id,
                                                      rollups.c.period == period, rollups.c.start >= since)
                             .order_by(rollups.c.start)))
