"""`pipemon serve` and `pipemon db upgrade`."""
from __future__ import annotations

import sys

import typer

from pipemon.cli import app
from pipemon.cli.text import escaped
from pipemon.errors import ConfigError

db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")

DbOption = typer.Option("sqlite:///pipemon.db", "--db", envvar="PIPEMON_DB",
                        help="sqlite:///PATH (embedded default) or postgresql+psycopg://user@host/db")
ConfigOption = typer.Option(None, "--config", "-c", envvar="PIPEMON_CONFIG", help="pipemon.yaml")


def load_settings(config: str | None):
    from pipemon import config as cfg
    try:
        return cfg.load(config)
    except ConfigError as e:
        typer.secho(escaped(str(e)), fg=typer.colors.RED, err=True)  # it quotes the file
        raise typer.Exit(2) from None


def run_server(pm, host: str, port: int, announce: str | None = None) -> None:
    import uvicorn

    from pipemon.api.app import create_app

    if announce:
        typer.echo(announce)
    uvicorn.run(create_app(pm, freeze_gc=True), host=host, port=port, log_level="warning", access_log=False,
                loop="auto", http="auto", timeout_graceful_shutdown=10)


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
          port: int = typer.Option(8787, help="Port to listen on."),
          db: str = DbOption, config: str | None = ConfigOption,
          sqlite_synchronous: str = typer.Option("FULL", help="SQLite durability: FULL survives power loss; "
                                                 "NORMAL survives a crash of pipemon only.")) -> None:
    """Run the pipemon service (ingest, API, evaluation, notifications) in one process."""
    from pipemon.app import build
    from pipemon.store.db import redact

    settings = load_settings(config)
    try:
        pm = build(db, settings, synchronous=sqlite_synchronous.upper())
    except Exception as e:  # a bad URL or an unreachable database: say so, no traceback, no password
        typer.secho(escaped(f"cannot open the database {redact(db)}: {scrub(str(e), db)}"),
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    run_server(pm, host, port, f"pipemon listening on http://{host}:{port}  (db: {pm.safe_db_url})")


def scrub(text: str, url: str) -> str:
    """`text` (an error message) with the database URL and its password replaced by the redacted URL."""
    from pipemon.store.db import redact, url_password

    safe = redact(url)
    text = text.replace(url, safe)
    password = url_password(url)
    return text.replace(password, "***") if password else text


@db_app.command("upgrade")
def db_upgrade(db: str = DbOption) -> None:
    """Apply the database migrations (also done on every start)."""
    from pipemon.store import db as store_db

    try:
        engine = store_db.open_engine(db)
        store_db.upgrade(engine)
        typer.echo(f"database {store_db.redact(db)} at revision {store_db.current_revision(engine)}")
    except Exception as e:  # as serve: say what failed, without a traceback or the password
        typer.secho(escaped(f"cannot upgrade the database {store_db.redact(db)}: {scrub(str(e), db)}"),
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    engine.dispose()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
