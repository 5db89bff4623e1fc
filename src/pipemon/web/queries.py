"""Reads the dashboard needs beyond the JSON API's (`store/reads.py`, `store/alerting.py`).

Same tables, same indexes, read through SQLAlchemy Core. Each function that could reach another team's
pipelines takes the caller's `scope` and puts it in its query (`reads.in_scope`), as the API's reads do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipemon.engine.health import HealthState
from pipemon.store.reads import in_scope
from pipemon.store.schema import alerts, engine_state, pipeline_state, pipelines

STATE = sa.func.coalesce(pipeline_state.c.state, "unknown")
RANK = sa.case({s.value: s.rank for s in HealthState}, value=STATE, else_=len(HealthState))  # worst first


@dataclass(frozen=True)
class Fleet:
    rows: list[sa.Row]
    total: int  # pipelines matching the filters (for the page count)


_BASE = pipelines.outerjoin(pipeline_state, pipeline_state.c.pipeline_id == pipelines.c.id)
_RANK = {s.value: s.rank for s in HealthState}


def _team_is(team: str | None):
    return pipelines.c.team.is_(None) if team is None else pipelines.c.team == team


def fleet_page(conn: Connection, counts: list[tuple[str | None, str, int]], *, team: str | None,
               states: list[str] | None, q: str | None, offset: int, limit: int,
               scope: str | None = None) -> Fleet:
    """One page of pipelines grouped by team (the team with the worst state first), worst first within a
    team, then by id. Never the whole fleet: `counts` (the fleet summary's GROUP BY, `reads.state_counts`,
    scoped as this page) says which (team, state) buckets the page falls in, and only those are read."""
    if q:  # a text filter: count the matching pipelines per bucket first (one scan of the ids)
        counts = [(r[0], r[1], r[2]) for r in conn.execute(
            sa.select(pipelines.c.team, STATE, sa.func.count()).select_from(_BASE)
            .where(pipelines.c.key.contains(q, autoescape=True), in_scope(pipelines.c.team, scope))
            .group_by(pipelines.c.team, STATE))]
    buckets = [(t, s, n) for t, s, n in counts
               if n and (team is None or (t or "unassigned") == team) and (not states or s in states)]
    order = team_order([(t or "unassigned", s, n) for t, s, n in buckets])
    buckets.sort(key=lambda b: (order[b[0] or "unassigned"], _RANK.get(b[1], 99)))
    rows: list[sa.Row] = []
    at = 0
    for t, s, n in buckets:
        if at + n > offset and len(rows) < limit:
            skip = max(0, offset - at)
            stmt = (sa.select(pipelines.c.key, pipelines.c.team, STATE.label("state"),
                              pipeline_state.c.reason, pipeline_state.c.state_since)
                    .select_from(_BASE).where(_team_is(t), STATE == s, in_scope(pipelines.c.team, scope)))
            if q:
                stmt = stmt.where(pipelines.c.key.contains(q, autoescape=True))
            rows += conn.execute(stmt.order_by(pipelines.c.key).offset(skip).limit(limit - len(rows))).all()
        at += n
    return Fleet(rows, sum(n for _, _, n in buckets))


def team_order(counts: list[tuple[str, str, int]]) -> dict[str, int]:
    """team -> position: the team with the worst state first, then the one with more pipelines in it, then
    by name (the overview's team cards and its table agree on this)."""
    worst: dict[str, tuple[int, int]] = {}
    for t, s, n in counts:
        if n:
            key = (_RANK.get(s, 99), -n)
            worst[t] = min(worst.get(t, key), key)
    return {t: i for i, t in enumerate(sorted(worst, key=lambda t: (*worst[t], t)))}


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


def team_keys(conn: Connection, team: str, limit: int, scope: str | None = None) -> list[str]:
    """A team's pipelines, worst first (for the team's lineage view)."""
    return [r[0] for r in conn.execute(
        sa.select(pipelines.c.key).select_from(
            pipelines.outerjoin(pipeline_state, pipeline_state.c.pipeline_id == pipelines.c.id))
        .where(pipelines.c.team == team, in_scope(pipelines.c.team, scope))
        .order_by(RANK, pipelines.c.key).limit(limit))]


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


def open_alerts_of(conn: Connection, pipeline: str, team: str | None) -> list[sa.Row]:
    """A pipeline's open alerts, newest first, through the (team, state) index: alerts carry no index on the
    pipeline, and the alert list's query (ordered by start) would walk every alert to find them."""
    rows = conn.execute(sa.select(alerts).where(alerts.c.team == (team or "unassigned"),
                                                alerts.c.state.in_(("firing", "acknowledged")),
                                                alerts.c.pipeline == pipeline))
    return sorted(rows, key=lambda r: (r.started_at, r.id), reverse=True)
