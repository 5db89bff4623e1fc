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
    # "auto": uvloop and httptools (dependencies in pyproject.toml) when importable, else asyncio and h11
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
                                                 "NORMAL survives a crash of pipemon only."),
          role: str = typer.Option("all", envvar="PIPEMON_ROLE",
                                   help="all (one process: everything), api (ingest into the event log, "
                                        "reads), worker (consume the log, evaluate, alert), dispatcher "
                                        "(deliver notifications). Roles other than all need --bus nats://…"),
          bus: str = typer.Option("memory", envvar="PIPEMON_BUS",
                                  help="The event log: memory (embedded, the writer itself) or "
                                       "nats://host:4222 (NATS JetStream)"),
          bus_prefix: str = typer.Option("pipemon", envvar="PIPEMON_BUS_PREFIX",
                                         help="Names the JetStream stream ({prefix}_events), its "
                                              "subjects ({prefix}.events.N), consumers ({prefix}_worker_N)"),
          watchdog_receiver: str | None = typer.Option(
              None, envvar="PIPEMON_WATCHDOG_RECEIVER",
              help="Cluster: the receiver (from the config) that gets a heartbeat while the cluster is "
                   "healthy (a dead man's switch), sent by the leading dispatcher"),
          watchdog_every: float = typer.Option(300.0, min=1.0, help="Seconds between heartbeats"),
          worker_mode: str = typer.Option(
              "leader", envvar="PIPEMON_WORKER_MODE",
              help="Cluster workers: leader (one active worker holds all partitions, the others stand by; "
                   "root-cause suppression, groups and inhibition see the whole fleet) or partitioned "
                   "(every worker active on its share of the partitions; those rules then see only the "
                   "pipelines of one worker: ARCHITECTURE.md)"),
          ) -> None:
    """Run the pipemon service: by default everything in one process; with --role, one part of a cluster.
    SIGHUP re-reads the config files (as POST /api/v1/config/reload)."""
    from pipemon.app import build
    from pipemon.store.db import redact

    auth = check_auth(auth, host)
    node_role, node_id = cluster_options(role, bus, bus_prefix, db)
    reloader, settings = load_reloader(config, config_dir)
    url = db if node_role is None else with_application_name(db, bus_prefix, node_role, node_id)
    try:
        pm = build(url, settings, synchronous=sqlite_synchronous.upper(), deliver=node_role is None)
    except Exception as e:  # a bad URL or an unreachable database: say so, no traceback, no password
        typer.secho(escaped(f"cannot open the database {redact(db)}: {scrub(str(e), url)}"),
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    pm.reloader = reloader
    what = ""
    if node_role is not None:
        from pipemon.cluster.node import Node
        if watchdog_receiver and watchdog_receiver not in {r.name for r in settings.receivers}:
            typer.secho(escaped(f"--watchdog-receiver {watchdog_receiver!r}: no receiver of that name in "
                                "the config"), fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
        if worker_mode not in ("leader", "partitioned"):
            typer.secho(escaped(f"--worker-mode {worker_mode!r}: expected leader or partitioned"),
                        fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
        pm.node = Node(pm, node_role, bus, bus_prefix, node_id, watchdog_receiver=watchdog_receiver,
                       watchdog_every=watchdog_every, partitioned=worker_mode == "partitioned")
        what = f", role: {node_role.value}, bus: {bus} (stream {pm.node.names.stream})"
    run_server(pm, host, port, f"pipemon listening on http://{host}:{port}  (db: {pm.safe_db_url}{what})",
               auth)


def cluster_options(role: str, bus: str, prefix: str, db: str):
    """(Role, node id) for a cluster node, or (None, None) for the one embedded process. Bad combinations
    exit 2 with what is wrong."""
    from pipemon.cluster.node import Role
    from pipemon.log import check_prefix

    def fail(msg: str):
        typer.secho(msg, fg=typer.colors.RED, err=True)
        raise typer.Exit(2)

    try:
        r = Role(role)
    except ValueError:
        fail(f"--role {role!r}: expected one of all, api, worker, dispatcher")
    try:
        check_prefix(prefix)
    except ValueError as e:
        fail(str(e))
    if bus == "memory":
        if r is not Role.ALL:
            fail(f"--role {r.value} needs the shared event log: --bus nats://host:4222 (with --bus memory "
                 "one process does everything: --role all)")
        return None, None
    if not bus.startswith(("nats://", "tls://")):
        fail(f"--bus {bus!r}: expected memory or nats://host:port")
    if not db.startswith("postgresql"):
        fail("a cluster (--bus nats://…) needs a PostgreSQL --db shared by its nodes "
             "(postgresql+psycopg://user@host/db)")
    import uuid
    return r, uuid.uuid4().hex[:8]


def with_application_name(db: str, prefix: str, role, node_id: str) -> str:
    """The URL with this node's PostgreSQL application_name (the cluster counts live members by it)."""
    from pipemon.cluster.node import application_name
    sep = "&" if "?" in db else "?"
    return f"{db}{sep}application_name={application_name(prefix, role, node_id)}"


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
