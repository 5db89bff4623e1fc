"""Reads the dashboard needs beyond the JSON API's (`store/reads.py`, `store/alerting.py`).

Same tables, same indexes, read through SQLAlchemy Core. Each function takes the filters a page takes, so
when access rules land (the teams issue) they are added here and in the API's queries, nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipemon.engine.health import HealthState
from pipemon.store.schema import engine_state, pipeline_state, pipelines

STATE = sa.func.coalesce(pipeline_state.c.state, "unknown")
RANK = sa.case({s.value: s.rank for s in HealthState}, value=STATE, else_=len(HealthState))


@dataclass(frozen=True)
class Fleet:
    rows: list[sa.Row]
    total: int  # pipelines matching the filters (for the page count)


def fleet_page(conn: Connection, *, team: str | None, states: list[str] | None, q: str | None,
               offset: int, limit: int) -> Fleet:
    """Pipelines by team (the team with the worst state first), worst first within a team; one page,
    never the whole fleet (OFFSET: at 100 a page, a fleet of 10,000 has 100 pages)."""
    base = pipelines.outerjoin(pipeline_state, pipeline_state.c.pipeline_id == pipelines.c.id)
    where = []
    if team is not None:
        where.append(pipelines.c.team == team)
    if q:
        where.append(pipelines.c.key.contains(q, autoescape=True))
    if states:
        where.append(STATE.in_(states))
    total = conn.execute(sa.select(sa.func.count()).select_from(base).where(*where)).scalar_one()
    # grouped by team, the team with the worst pipeline first; within a team, worst first
    team_worst = sa.func.min(RANK).over(partition_by=pipelines.c.team)
    inner = (sa.select(pipelines.c.key, pipelines.c.team, STATE.label("state"), RANK.label("rank"),
                       team_worst.label("team_rank"), pipeline_state.c.reason, pipeline_state.c.state_since)
             .select_from(base).where(*where).subquery())
    rows = list(conn.execute(
        sa.select(inner.c.key, inner.c.team, inner.c.state, inner.c.reason, inner.c.state_since)
        .order_by(inner.c.team_rank, inner.c.team, inner.c.rank, inner.c.key).offset(offset).limit(limit)))
    return Fleet(rows, total)


def states_of(conn: Connection, keys: list[str]) -> dict[str, str]:
    """pipeline id -> state, for a handful of pipelines (lineage neighbours)."""
    out: dict[str, str] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        for r in conn.execute(sa.select(pipelines.c.key, STATE).select_from(
                pipelines.outerjoin(pipeline_state, pipeline_state.c.pipeline_id == pipelines.c.id))
                .where(pipelines.c.key.in_(chunk))):
            out[r[0]] = r[1]
    return out


def team_keys(conn: Connection, team: str, limit: int) -> list[str]:
    """A team's pipelines, worst first (for the team's lineage view)."""
    return [r[0] for r in conn.execute(
        sa.select(pipelines.c.key).select_from(
            pipelines.outerjoin(pipeline_state, pipeline_state.c.pipeline_id == pipelines.c.id))
        .where(pipelines.c.team == team).order_by(RANK, pipelines.c.key).limit(limit))]


def detect_state(conn: Connection, pipeline_id: int) -> dict[str, Any] | None:
    """The pipeline's detector state as of the engine's last checkpoint (learned baselines)."""
    row = conn.execute(sa.select(engine_state.c.detect)
                       .where(engine_state.c.pipeline_id == pipeline_id)).first()
    if row is None or not row.detect:
        return None
    try:
        return msgspec.json.decode(row.detect)
    except msgspec.DecodeError:
        return None
