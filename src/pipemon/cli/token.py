"""`pipemon token create|list|revoke` and `pipemon audit`: against a server (--url, --token) through the
admin API, or with --db straight on the database, which is how the first org-admin token is made before
any token exists (the actor recorded is then `cli:<os user>`)."""
from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import typer

from pipemon.cli import TokenOption, UrlOption, app
from pipemon.cli.alerts import api_send
from pipemon.cli.output import Column, Output, OutputOption, emit
from pipemon.cli.status import api_get

token_app = typer.Typer(no_args_is_help=True, help="API tokens: create (shown once), list, revoke.")
app.add_typer(token_app, name="token")

DbTarget = typer.Option(None, "--db", envvar="PIPEMON_DB", show_envvar=False,
                        help="Work on this database directly instead of through a server "
                             "(e.g. to create the first org-admin token).")
ROLES = "ingest, viewer, operator, admin, metrics"
T = TypeVar("T")


def _fail(msg: str, code: int = 1) -> typer.Exit:
    typer.secho(msg, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextmanager
def _database(db: str) -> Iterator[Any]:
    """An engine on `db`, migrated (the tokens table may not exist yet); errors without the password."""
    from pipemon.cli.serve import scrub
    from pipemon.store import db as store_db

    try:
        engine = store_db.open_engine(db)
        store_db.upgrade(engine)
    except Exception as e:
        raise _fail(f"cannot open the database {store_db.redact(db)}: {scrub(str(e), db)}") from None
    try:
        yield engine
    finally:
        engine.dispose()


def _local(db: str, fn: Callable[[Any, Any, float], T]) -> T:
    """fn(conn, actor, now) in one transaction on the database itself."""
    from pipemon.access import Caller, Role
    from pipemon.errors import PipemonError

    actor = Caller(name=f"cli:{getpass.getuser()}", role=Role.ORG_ADMIN)
    with _database(db) as engine:
        try:
            with engine.begin() as conn:
                return fn(conn, actor, time.time())
        except PipemonError as e:
            raise _fail(str(e)) from None


@token_app.command("create")
def create(team: str | None = typer.Option(None, "--team", help="The team the token acts for."),
           role: str | None = typer.Option(None, "--role", help=ROLES),
           org_admin: bool = typer.Option(False, "--org-admin", help="An org-wide admin token (no team)."),
           name: str | None = typer.Option(None, "--name", help="Unique; default TEAM-ROLE-xxxxxx."),
           expires: str | None = typer.Option(None, "--expires", help="Lifetime, e.g. 90d; default never."),
           db: str | None = DbTarget, url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Create a token. The token itself is printed alone on the last line of standard output, once: it is
    stored only as a hash."""
    from pipemon.access import Role
    from pipemon.api.admin import NewToken, create_token

    if org_admin:
        if team is not None or role not in (None, Role.ORG_ADMIN.value):
            raise _fail("--org-admin makes an org-wide admin token: leave out --team and --role", 2)
        if not name:
            raise _fail("--org-admin needs --name (who holds it, e.g. --name alice-admin)", 2)
        role = Role.ORG_ADMIN.value
    elif role is None:
        raise _fail(f"give --role ({ROLES}) with --team, or --org-admin --name N", 2)
    try:
        body = NewToken(role=Role(role.lower()), team=team, name=name, expires=expires)
    except ValueError:
        raise _fail(f"--role {role!r}: expected one of {ROLES}", 2) from None
    if db is not None:
        tok, secret = _local(db, lambda conn, actor, now: create_token(conn, actor, body, now))
        view: dict = {"name": tok.name, "team": tok.team, "role": tok.role.value}
    else:
        view = api_send("POST", url, token, "/api/v1/tokens", body.model_dump(mode="json"))
        secret = view["token"]
    typer.echo(f"created token {view['name']!r} (role {view['role']}, team {view['team'] or '-'}); "
               "it is shown only now:", err=True)
    typer.echo(secret)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else str(v)


def _rows(items: list[dict], cols: list[str], title: str, output: Output) -> None:
    def value(col: str) -> Callable[[dict], str]:
        return lambda it: _cell(it.get(col))
    emit(output, title, [Column(c.upper(), value(c)) for c in cols], items)


@token_app.command("list")
def list_(team: str | None = typer.Option(None, help="Only this team's tokens."),
          db: str | None = DbTarget, url: str = UrlOption, token: str | None = TokenOption,
          output: Output = OutputOption) -> None:
    """List tokens (never their secrets or hashes)."""
    from pipemon.store import tokens as store

    if db is not None:
        def read(conn, _actor, now):
            return [store.token_view(t, now) for t in store.list_tokens(conn, team)]
        items = _local(db, read)
    else:
        items = api_get(url, token, "/api/v1/tokens", {"team": team})["items"]
    _rows(items, ["name", "team", "role", "state", "created_at", "created_by", "expires_at"], "tokens",
          output)


@token_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="The token's name."),
           db: str | None = DbTarget, url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Revoke a token: refused from then on (a running server notices within 2 s)."""
    from pipemon.api.admin import revoke_token
    from pipemon.store import tokens as store

    if db is not None:
        view = _local(db, lambda conn, actor, now:
                      store.token_view(revoke_token(conn, actor, name, now), now))
    else:
        view = api_send("DELETE", url, token, f"/api/v1/tokens/{quote(name, safe='')}")
    typer.echo(f"token {view['name']!r} revoked at {view['revoked_at']}")


@app.command()
def audit(team: str | None = typer.Option(None, help="Only what belongs to this team."),
          action: str | None = typer.Option(None, help="e.g. token.create, alert.acknowledge, silence.add"),
          limit: int = typer.Option(100, min=1, max=1000),
          db: str | None = DbTarget, url: str = UrlOption, token: str | None = TokenOption,
          output: Output = OutputOption) -> None:
    """The audit log, newest first: who (token name and team) changed what, when and from where."""
    from pipemon.store import audit as store

    if db is not None:
        def read(conn, _actor, _now):
            page = store.entries(conn, team=team, action=action, limit=limit)
            return [store.entry_view(r) for r in page.items]
        items = _local(db, read)
    else:
        params = {"team": team, "action": action, "limit": limit}
        items = api_get(url, token, "/api/v1/audit", params)["items"]
    _rows(items, ["time", "actor", "actor_team", "action", "target", "team", "address", "detail"], "audit",
          output)
