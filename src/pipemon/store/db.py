"""Opening the database: URL handling, SQLite pragmas, timeouts, and migrations on start.

SQLite (the embedded default) runs in WAL mode so readers never block the single writer; PostgreSQL
is the production backend. Both sit behind the same SQLAlchemy Core tables and queries.

Every wait on PostgreSQL is bounded, also when the server stops answering without closing its sockets
(a frozen host, a black-holed network): `connect_timeout` bounds connecting, the server's
`statement_timeout` a slow statement, TCP keepalives and `tcp_user_timeout` a dead peer, the pool's
`pool_timeout` a wait for a pooled connection, and the stall guard below a server that is alive for TCP
but silent (SIGSTOP): it shuts the socket of any call that waited past STALL_S, which turns the hang into
an ordinary connection error. URLs are shown with their password hidden (`redact`).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"

CONNECT_TIMEOUT_S = 5        # libpq connect_timeout: a frozen postmaster holds a connect this long at most
STATEMENT_TIMEOUT_S = 10     # PostgreSQL cancels a statement running longer (migrations, VACUUM exempt)
STALL_S = STATEMENT_TIMEOUT_S + 5  # no answer by then, not even the server's own cancel: the server is gone
POOL_TIMEOUT_S = 5           # waiting for a pooled connection


def normalize_url(url: str) -> str:
    """`postgresql://` -> the psycopg 3 driver; a bare path -> sqlite."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


def redact(url: str | sa.URL) -> str:
    """The URL to show in logs, errors and the start-up line: its password hidden (`***`)."""
    try:
        parsed = sa.make_url(normalize_url(url) if isinstance(url, str) else url)
        return parsed.render_as_string(hide_password=True)
    except Exception:  # not parseable as a URL: show its scheme only, never what could be a secret
        text = str(url)
        return text.split("://", 1)[0] + "://***" if "://" in text else "(unparseable database URL)"


def url_password(url: str) -> str | None:
    """The password in a database URL, if any (to scrub it from third-party error text)."""
    try:
        pw = sa.make_url(normalize_url(url)).password
    except Exception:  # unparseable: the caller scrubs the whole URL instead
        return None
    return str(pw) if pw else None


def end_session(conn: Connection | None) -> None:
    """End a connection's database session instead of returning it to the pool: whatever the session held
    (advisory locks, `SET` options) ends with it, and a dead connection that fails to close is no error."""
    if conn is None:
        return
    try:
        conn.invalidate()
        conn.close()
    except Exception:  # noqa: BLE001 - a dead connection may fail to close
        pass


def is_sqlite(url: str) -> bool:
    return normalize_url(url).startswith("sqlite")


def open_engine(url: str, *, synchronous: str = "FULL", pool_size: int = 8) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  pool_size=pool_size, max_overflow=16)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # every pooled connection gets the same settings
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: an acknowledged event survives power loss, not only a crash of pipemon.
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA cache_size=-65536")
            cur.execute("PRAGMA temp_store=MEMORY")
            # Checkpoint the WAL every ~40 MB instead of every 4 MB: fewer checkpoint stalls on the writer.
            cur.execute("PRAGMA wal_autocheckpoint=10000")
            cur.close()
        return engine
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=16, pool_pre_ping=True,
                              pool_timeout=POOL_TIMEOUT_S, connect_args=_pg_connect_args(url))

    @sa.event.listens_for(engine, "connect")
    def _timeouts(dbapi_conn, _record):
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_S * 1000}")
        dbapi_conn.commit()

    _guard_dialect(engine)
    return engine


def _pg_connect_args(url: str) -> dict[str, Any]:
    """libpq settings that bound waits on the network; a setting given in the URL wins."""
    given = sa.make_url(url).query
    wanted: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": 10,
                              "keepalives_interval": 5, "keepalives_count": 3,
                              "tcp_user_timeout": STALL_S * 1000}
    return {k: v for k, v in wanted.items() if k not in given}


class StallGuard:
    """Shuts the socket of a PostgreSQL call that has waited longer than its limit for an answer.

    A server that stops (SIGSTOP, a hung host) keeps its sockets open and its kernel still acknowledges
    TCP, so neither keepalives nor the server's statement_timeout end the wait: libpq would block until
    the server resumes. One thread for the process watches every call in flight; shutting the socket down
    makes libpq see a closed connection, which SQLAlchemy reports as a disconnect (a transient error)."""

    def __init__(self, poll: float = 0.5) -> None:
        self._inflight: dict[int, tuple[float, float, int]] = {}  # id(dbapi conn) -> (since, limit, fd)
        self._exempt: set[int] = set()
        self._lock = threading.Lock()
        self._poll = poll
        self._thread: threading.Thread | None = None
        self.shut = 0  # sockets shut so far (for tests and logs)

    @contextmanager
    def watch(self, dbapi_conn: Any, limit: float = STALL_S) -> Iterator[None]:
        key = id(dbapi_conn)
        try:
            fd = dbapi_conn.pgconn.socket
        except Exception:  # closed, or not psycopg: nothing to watch
            yield
            return
        with self._lock:
            if key in self._exempt or key in self._inflight:
                fd = -1
            else:
                self._inflight[key] = (time.monotonic(), limit, fd)
                self._ensure_thread()
        try:
            yield
        finally:
            if fd != -1:
                with self._lock:
                    self._inflight.pop(key, None)

    @contextmanager
    def exempt(self, dbapi_conn: Any) -> Iterator[None]:
        """Calls on this connection may take long on purpose (migrations, VACUUM)."""
        key = id(dbapi_conn)
        with self._lock:
            self._exempt.add(key)
        try:
            yield
        finally:
            with self._lock:
                self._exempt.discard(key)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="pipemon-stall-guard", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self._poll)
            now = time.monotonic()
            with self._lock:
                for key, (since, limit, fd) in list(self._inflight.items()):
                    if now - since < limit:
                        continue
                    del self._inflight[key]  # still in flight (under the lock): the fd is still its own
                    self.shut += 1
                    log.error("the database has not answered for %.0f s: closing that connection",
                              now - since)
                    try:
                        s = socket.socket(fileno=os.dup(fd))
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        finally:
                            s.close()
                    except OSError:
                        pass


STALL_GUARD = StallGuard()


def _guard_dialect(engine: Engine) -> None:
    """Every call that waits for the server (execute, commit, rollback, the pool's ping) is watched."""
    d = engine.dialect

    def conn_of(cursor: Any) -> Any:
        return getattr(cursor, "connection", None)

    for name, pick in (("do_execute", conn_of), ("do_executemany", conn_of),
                       ("do_execute_no_params", conn_of), ("do_commit", None), ("do_rollback", None),
                       ("do_ping", None)):
        orig = getattr(d, name)

        def wrapped(first, *args, _orig=orig, _pick=pick, **kw):
            dbapi_conn = _pick(first) if _pick is not None else first
            if dbapi_conn is None:
                return _orig(first, *args, **kw)
            with STALL_GUARD.watch(dbapi_conn):
                return _orig(first, *args, **kw)
        setattr(d, name, wrapped)


@contextmanager
def unbounded(conn: Connection) -> Iterator[None]:
    """Inside a transaction: no statement timeout and no stall guard (migrations, VACUUM)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    dbapi_conn = conn.connection.dbapi_connection
    local = conn.in_transaction()
    with STALL_GUARD.exempt(dbapi_conn):
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0" if local else "SET statement_timeout = 0")
        try:
            yield
        finally:
            if not local:  # a session setting outlives this block on the pooled connection: restore it
                conn.exec_driver_sql(f"SET statement_timeout = {STATEMENT_TIMEOUT_S * 1000}")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic migrations. On PostgreSQL an advisory lock keeps concurrent replicas from racing."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn, unbounded(conn):
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(727001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
