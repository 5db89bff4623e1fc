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
    """Pipelines worst first (state rank, then team, then id), one page: never the whole fleet."""
    base = pipelines.outerjoin(pipeline_state, pipeline_state.c.pipeline_id == pipelines.c.id)
    where = []
    if team is not None:
        where.append(pipelines.c.team == team)
    if q:
        where.append(pipelines.c.key.contains(q, autoescape=True))
    if states:
        where.append(STATE.in_(states))
    total = conn.execute(sa.select(sa.func.count()).select_from(base).where(*where)).scalar_one()
    rows = list(conn.execute(
        sa.select(pipelines.c.key, pipelines.c.team, STATE.label("state"), pipeline_state.c.reason,
                  pipeline_state.c.state_since, pipelines.c.last_event_at)
        .select_from(base).where(*where)
        .order_by(RANK, pipelines.c.team, pipelines.c.key).offset(offset).limit(limit)))
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
