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
ConfigDirOption = typer.Option(None, "--config-dir", envvar="PIPEMON_CONFIG_DIR",
                               help="A directory of team files (config.d/), one per team")


def load_settings(config: str | None):
    from pipemon import config as cfg
    try:
        return cfg.load(config)
    except ConfigError as e:
        typer.secho(escaped(str(e)), fg=typer.colors.RED, err=True)  # it quotes the file
        raise typer.Exit(2) from None


def load_reloader(config: str | None, config_dir: str | None):
    """The config files as `serve` reads them (again on SIGHUP): an invalid main file refuses to start; an
    invalid team file is reported and left out, so one team's mistake does not stop the others."""
    from pipemon.reload import Reloader
    from pipemon.teamconfig import ConfigSource

    reloader = Reloader(ConfigSource(config, config_dir))
    loaded = reloader.initial()
    if loaded.settings is None:
        typer.secho("invalid configuration:\n" + "\n".join(f"  {p}" for p in loaded.main_problems),
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    for s in loaded.statuses.values():
        if not s.ok:
            typer.secho(f"team {s.team}'s config file {s.file} is invalid and left out:\n"
                        + "\n".join(f"  {p}" for p in s.problems), fg=typer.colors.YELLOW, err=True)
    return reloader, loaded.settings


def run_server(pm, host: str, port: int, announce: str | None = None, auth: str = "auto") -> None:
    import uvicorn

    from pipemon.api.app import create_app
    from pipemon.api.keyring import is_loopback

    app = create_app(pm, freeze_gc=True, auth=auth, loopback=is_loopback(host))
    keyring = app.state.keyring
    keyring.load()
    state = "on" if keyring.auth_on else "off"
    if auth == "auto":
        state += (" (auto: a token exists)" if keyring.auth_on and keyring.loopback else
                  " (auto: not loopback)" if keyring.auth_on else
                  " (auto: loopback and no token yet; the first token switches it on)")
    if announce:
        typer.echo(announce)
    typer.echo(f"auth: {state}")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                loop="auto", http="auto", timeout_graceful_shutdown=10)


AuthOption = typer.Option("auto", "--auth", case_sensitive=False,
                          help="on: every request needs a token; off: none does (loopback only); auto: off "
                               "while listening on loopback with no token created yet, else on.")


def check_auth(auth: str, host: str) -> str:
    """The --auth value, or exit 2 when it is unknown or would leave a reachable server open."""
    from pipemon.api.keyring import AuthMode, is_loopback

    try:
        mode = AuthMode(auth.lower())
    except ValueError:
        typer.secho(f"--auth {auth!r}: expected on, off or auto", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if mode is AuthMode.OFF and not is_loopback(host):
        typer.secho(f"refusing to start: --auth off on {host}, which is not a loopback address, would let "
                    "anyone who can reach the port read and change every team's pipelines and alerts. "
                    "Listen on 127.0.0.1, or create a token (pipemon token create --org-admin --name N "
                    "--db URL) and use --auth on.", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    return mode.value


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
          port: int = typer.Option(8787, help="Port to listen on."),
          db: str = DbOption, config: str | None = ConfigOption, config_dir: str | None = ConfigDirOption,
          auth: str = AuthOption,
          sqlite_synchronous: str = typer.Option("FULL", help="SQLite durability: FULL survives power loss; "
                                                 "NORMAL survives a crash of pipemon only.")) -> None:
    """Run the pipemon service (ingest, API, evaluation, notifications) in one process. SIGHUP re-reads
    the config files (as POST /api/v1/config/reload)."""
    from pipemon.app import build
    from pipemon.store.db import redact

    auth = check_auth(auth, host)
    reloader, settings = load_reloader(config, config_dir)
    try:
        pm = build(db, settings, synchronous=sqlite_synchronous.upper())
    except Exception as e:  # a bad URL or an unreachable database: say so, no traceback, no password
        typer.secho(escaped(f"cannot open the database {redact(db)}: {scrub(str(e), db)}"),
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    pm.reloader = reloader
    run_server(pm, host, port, f"pipemon listening on http://{host}:{port}  (db: {pm.safe_db_url})", auth)


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
