"""The audit log: every change a person or client made, with who (token name and team), when, what, to
which team's record, and from which address. Written in the transaction of the change it records, so a
change and its record commit (or roll back) together."""
from __future__ import annotations

import time
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import Column, Float, Index, Integer, String, Table, Text
from sqlalchemy.engine import Connection

from pipemon.access import Caller
from pipemon.ingest.common import iso
from pipemon.store.reads import Page, decode_cursor, encode_cursor
from pipemon.store.schema import metadata

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("time", Float, nullable=False),
    Column("actor", Text, nullable=False),        # the token's name (never a name the client supplies)
    Column("actor_team", Text),                   # the token's team; NULL: org-wide
    Column("team", Text),                         # the team the changed record belongs to; NULL: org-wide
    Column("action", String(32), nullable=False),  # e.g. token.create, alert.acknowledge, silence.add
    Column("target", Text, nullable=False),       # what was changed: a token name, an alert id …
    Column("detail", Text),                       # JSON object
    Column("address", Text),                      # the client's address
)
Index("ix_audit_team_id", audit_log.c.team, audit_log.c.id)

_enc = msgspec.json.Encoder()


def record(conn: Connection, *, actor: Caller, action: str, target: str, team: str | None,
           detail: dict[str, Any] | None = None, now: float | None = None) -> None:
    """Record one change (inside the change's own transaction)."""
    conn.execute(audit_log.insert().values(
        time=time.time() if now is None else now, actor=actor.name, actor_team=actor.team, team=team,
        action=action, target=str(target), detail=None if detail is None else _enc.encode(detail).decode(),
        address=actor.address))


def entries(conn: Connection, *, team: str | None = None, action: str | None = None,
            since: float | None = None, limit: int = 100, cursor: str | None = None) -> Page:
    """Newest first; `team`: only what belongs to that team (a team admin's view)."""
    q = sa.select(audit_log)
    if team is not None:
        q = q.where(audit_log.c.team == team)
    if action is not None:
        q = q.where(audit_log.c.action == action)
    if since is not None:
        q = q.where(audit_log.c.time >= since)
    if cursor:
        (last,) = decode_cursor(cursor, 1)
        q = q.where(audit_log.c.id < last)
    rows = list(conn.execute(q.order_by(audit_log.c.id.desc()).limit(limit + 1)))
    return Page(rows[:limit], encode_cursor(rows[limit - 1].id) if len(rows) > limit else None)


def entry_view(r) -> dict[str, Any]:
    return {"id": r.id, "time": iso(r.time), "actor": r.actor, "actor_team": r.actor_team, "team": r.team,
            "action": r.action, "target": r.target,
            "detail": msgspec.json.decode(r.detail) if r.detail else None, "address": r.address}
