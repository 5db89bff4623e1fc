"""API tokens in the store: who may call, as what role, for which team.

A token is `pm_` + 43 random URL-safe characters (256 bits), shown once when created; the store keeps
only its SHA-256. A fast hash is right here: a guess of a 256-bit random string cannot be sped up by a
slow hash the way a guess of a human password can (and every request checks one).
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Column, Float, Index, Integer, String, Table, Text
from sqlalchemy.engine import Connection

from pipemon.access import Role
from pipemon.errors import BadRequest, Conflict, NotFound
from pipemon.ingest.common import iso
from pipemon.store.schema import metadata

PREFIX = "pm_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")

tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("team", Text),                         # NULL: org-wide (org-admin, or a metrics scrape token)
    Column("role", String(16), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),  # sha256 hex of the token
    Column("created_at", Float, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
)
Index("ix_tokens_team", tokens.c.team)


@dataclass(frozen=True)
class Token:
    """A token as stored (never the secret itself)."""

    id: int
    name: str
    team: str | None
    role: Role
    hash: str
    created_at: float
    created_by: str
    expires_at: float | None
    revoked_at: float | None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise BadRequest(f"token name {name!r}: 1-64 letters, digits and . _ : @ -, starting with a letter "
                         "or digit")
    return name


def check_grant(team: str | None, role: Role) -> None:
    """What a token may be: an org-admin has no team; every team role has one; metrics may have either."""
    if role is Role.ORG_ADMIN and team is not None:
        raise BadRequest("an org-admin token belongs to no team: leave out the team")
    if role not in (Role.ORG_ADMIN, Role.METRICS) and team is None:
        raise BadRequest(f"a {role} token needs a team")
    if team is not None and not NAME.match(team):
        raise BadRequest(f"team {team!r}: 1-64 letters, digits and . _ : @ -")


def _token(r) -> Token:
    return Token(r.id, r.name, r.team, Role(r.role), r.hash, r.created_at, r.created_by, r.expires_at,
                 r.revoked_at)


def create(conn: Connection, *, name: str, team: str | None, role: Role, created_by: str, now: float,
           expires_at: float | None = None) -> tuple[Token, str]:
    """Store a new token; return it and its secret (the only time the secret exists outside the client)."""
    check_name(name)
    check_grant(team, role)
    if expires_at is not None and expires_at <= now:
        raise BadRequest("a token must expire in the future")
    if conn.execute(sa.select(tokens.c.id).where(tokens.c.name == name)).first() is not None:
        raise Conflict(f"a token named {name!r} exists already (names stay taken after a revoke)")
    secret = new_secret()
    hashed = digest(secret)
    row = {"name": name, "team": team, "role": role.value, "hash": hashed, "created_at": now,
           "created_by": created_by, "expires_at": expires_at, "revoked_at": None}
    pk = conn.execute(tokens.insert().values(**row)).inserted_primary_key
    assert pk is not None  # a single-row INSERT always reports its key
    return Token(pk[0], name, team, role, hashed, now, created_by, expires_at, None), secret


def fingerprint(conn: Connection) -> tuple:
    """Changes whenever a token is created or revoked (rows are never deleted; a revoke stamps the latest
    revoked_at): one aggregate read tells a reader whether its copy is current."""
    return tuple(conn.execute(sa.select(sa.func.count(), sa.func.max(tokens.c.id),
                                        sa.func.max(tokens.c.revoked_at))).one())


def load_all(conn: Connection) -> list[Token]:
    return [_token(r) for r in conn.execute(sa.select(tokens).order_by(tokens.c.id))]


def list_tokens(conn: Connection, team: str | None = None) -> list[Token]:
    """Every token, or one team's (`team`) only."""
    q = sa.select(tokens).order_by(tokens.c.team, tokens.c.name)
    if team is not None:
        q = q.where(tokens.c.team == team)
    return [_token(r) for r in conn.execute(q)]


def get(conn: Connection, name: str, team: str | None = None) -> Token:
    """A token by name; with `team`, only that team's (another team's is not found: its name is not
    leaked)."""
    q = sa.select(tokens).where(tokens.c.name == name)
    if team is not None:
        q = q.where(tokens.c.team == team)
    row = conn.execute(q).first()
    if row is None:
        raise NotFound(f"no token named {name!r}")
    return _token(row)


def revoke(conn: Connection, name: str, now: float, team: str | None = None) -> tuple[Token, bool]:
    """Revoke a token (scoped by `team` as `get`); True when it was revoked now, False when it already was."""
    tok = get(conn, name, team)
    if tok.revoked_at is not None:
        return tok, False
    conn.execute(tokens.update().where(tokens.c.id == tok.id).values(revoked_at=now))
    return get(conn, name, team), True


def token_view(tok: Token, now: float) -> dict:
    """A token as the API and CLI show it: never its hash."""
    return {"name": tok.name, "team": tok.team, "role": tok.role.value, "state": tok.state(now),
            "created_at": iso(tok.created_at), "created_by": tok.created_by,
            "expires_at": iso(tok.expires_at), "revoked_at": iso(tok.revoked_at)}
