"""Tokens and the audit log over HTTP. A team admin manages its own team's tokens and reads its own team's
audit entries; an org admin everything. Another team's token answers 404 (its name is not leaked), and
no answer ever holds a token's hash; a new token's secret is in the creation's answer only."""
from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from pipemon.access import Action, Caller, Role
from pipemon.api import auth
from pipemon.config import parse_duration
from pipemon.errors import BadRequest, Forbidden
from pipemon.store import audit
from pipemon.store import tokens as store
from pipemon.api.owner import on_owner

router = APIRouter(tags=["admin"])
ADMIN = {"x-pipemon-action": Action.ADMIN.value}
Admin = Annotated[Caller, Depends(auth.require(Action.ADMIN))]


class NewToken(BaseModel):
    role: Role
    team: str | None = Field(default=None, max_length=64, description="none: org-wide (org-admin, metrics)")
    name: str | None = Field(default=None, max_length=64, description="default: TEAM-ROLE-xxxxxx")
    expires: str | None = Field(default=None, description="lifetime, e.g. 90d or 12h; none: never expires")


def grantable(who: Caller, team: str | None, role: Role) -> None:
    """May `who` hand out a `role` token of `team`? A team admin: its own team, team roles only."""
    if who.team is None:
        return
    if team != who.team:
        raise Forbidden(f"the token {who.name!r} manages team {who.team!r}'s tokens only")
    if role in (Role.ORG_ADMIN, Role.METRICS):
        raise Forbidden(f"only an org admin may create a {role} token")


def create_token(conn, who: Caller, body: NewToken, now: float) -> tuple[store.Token, str]:
    """In the writer's transaction: the token and its audit entry commit together."""
    team = body.team if body.team is not None or who.team is None else who.team
    grantable(who, team, body.role)
    try:
        ttl = parse_duration(body.expires) if body.expires is not None else None
    except ValueError as e:
        raise BadRequest(f"expires: {e}") from None
    if ttl is not None and ttl <= 0:
        raise BadRequest("expires: a token must live for some time, e.g. 90d")
    name = body.name or f"{team or 'org'}-{body.role}-{secrets.token_hex(3)}"
    tok, secret = store.create(conn, name=name, team=team, role=body.role, created_by=who.name, now=now,
                               expires_at=None if ttl is None else now + ttl)
    audit.record(conn, actor=who, action="token.create", target=tok.name, team=tok.team, now=now,
                 detail={"role": tok.role.value, "expires_at": tok.expires_at})
    return tok, secret


def revoke_token(conn, who: Caller, name: str, now: float) -> store.Token:
    tok, revoked = store.revoke(conn, name, now, team=who.scope())
    if revoked:
        audit.record(conn, actor=who, action="token.revoke", target=tok.name, team=tok.team, now=now,
                     detail={"role": tok.role.value})
    return tok


@router.post("/api/v1/tokens", status_code=201, openapi_extra=ADMIN,
             summary="Create a token; its secret is in this answer only",
             responses={403: {"description": "a team admin asked for another team's or an org-wide token"},
                        409: {"description": "the name is taken"}})
async def post_token(request: Request, body: NewToken, who: Admin) -> dict[str, Any]:
    pm = request.app.state.pm
    tok, secret = await on_owner(request, lambda conn, now: create_token(conn, who, body, now))
    await asyncio.to_thread(request.app.state.keyring.load)  # honoured at once by this process
    return {**store.token_view(tok, pm.clock.now()), "token": secret}


@router.get("/api/v1/tokens", openapi_extra=ADMIN, summary="Tokens (a team admin: its team's), never hashes")
def list_tokens(request: Request, who: Admin, team: str | None = None) -> dict[str, Any]:
    pm = request.app.state.pm
    with pm.db.connect() as conn:
        rows = store.list_tokens(conn, team=who.scope() or team)
    now = pm.clock.now()
    return {"items": [store.token_view(t, now) for t in rows]}


@router.delete("/api/v1/tokens/{name}", openapi_extra=ADMIN,
               summary="Revoke a token (refused from the next request on, in every replica within 2 s)")
async def delete_token(request: Request, name: str, who: Admin) -> dict[str, Any]:
    pm = request.app.state.pm
    tok = await on_owner(request, lambda conn, now: revoke_token(conn, who, name, now))
    await asyncio.to_thread(request.app.state.keyring.load)
    return store.token_view(tok, pm.clock.now())


@router.get("/api/v1/audit", openapi_extra=ADMIN,
            summary="The audit log, newest first (a team admin: what belongs to its team)")
def list_audit(request: Request, who: Admin, team: str | None = None, action: str | None = None,
               since: datetime | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               cursor: str | None = None) -> dict[str, Any]:
    with request.app.state.pm.db.connect() as conn:
        page = audit.entries(conn, team=who.scope() or team, action=action,
                             since=since.timestamp() if since else None, limit=limit, cursor=cursor)
    return {"items": [audit.entry_view(r) for r in page.items], "next_cursor": page.next_cursor}
