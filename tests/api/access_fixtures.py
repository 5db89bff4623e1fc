"""Callers for the access-control tests, in ONE place: a fixed table of tokens, and a resolver installed as
`app.state.resolve_caller` that maps a request's token to its Caller as the real token store will.

`serve` stores these tokens in the real token store (their hashes, as `pipemon token create` does; the
secrets are fixed strings so the tests can name them) and revokes the revoked one, so a served app resolves
every request through the real keyring. `resolve` stays for the tests that build an app by hand.

A token is read from `Authorization: Bearer …`, then the `pipemon_token` cookie (the dashboard), then
`?key=` (pings); none is a 401, as is an unknown or a revoked one.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import Request

from pipemon.access import Caller, Role
from pipemon.errors import Unauthorized
from tests.conftest import free_port

TEAMS = ("payments", "marketing")
TEAM_ROLES = (Role.INGEST, Role.VIEWER, Role.OPERATOR, Role.ADMIN)


def token_of(team: str | None, role: Role) -> str:
    return f"tok-{team or 'org'}-{role.value}"


CALLERS: dict[str, Caller] = {
    **{token_of(t, r): Caller(name=f"{t}-{r.value}", role=r, team=t) for t in TEAMS for r in TEAM_ROLES},
    token_of(None, Role.METRICS): Caller(name="scraper", role=Role.METRICS),
    token_of(None, Role.ORG_ADMIN): Caller(name="root", role=Role.ORG_ADMIN),
}
REVOKED = "tok-payments-operator-revoked"  # was payments' operator token; revoked since


def token_in(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get("pipemon_token") or request.query_params.get("key")


def resolve(request: Request) -> Caller:
    token = token_in(request)
    if token is None:
        raise Unauthorized("a token is required: Authorization: Bearer TOKEN")
    if token == REVOKED:
        raise Unauthorized("this token was revoked")
    who = CALLERS.get(token)
    if who is None:
        raise Unauthorized("unknown token")
    return who


@dataclass
class Served:
    """create_app(pm) under a real uvicorn in a thread, auth on through `resolve`."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def serve(pm) -> Served:
    from pipemon.api.app import create_app

    install_tokens(pm)
    app = create_app(pm, auth="on")  # the real keyring resolves every request
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", server, thread)


def install_tokens(pm) -> None:
    """CALLERS and REVOKED as rows of the real token store."""
    from pipemon.store import tokens as store

    now = pm.clock.now()
    rows = [(tok, c.name, c.team, c.role) for tok, c in CALLERS.items()]
    rows.append((REVOKED, "payments-operator-old", "payments", Role.OPERATOR))
    with pm.db.begin() as conn:
        for secret, name, team, role in rows:
            conn.execute(store.tokens.insert().values(
                name=name, team=team, role=role.value, hash=store.digest(secret), created_at=now,
                created_by="tests", expires_at=None, revoked_at=None))
        store.revoke(conn, "payments-operator-old", now)


def client(url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30, follow_redirects=False)
