"""Backups: a consistent copy of the SQLite database while pipemon runs; for PostgreSQL, the pg_dump command.

Copying `pipemon.db` by hand is not a backup: in WAL mode the latest commits live in `pipemon.db-wal` until a
checkpoint moves them, and a copy taken during a write may be torn. SQLite's online backup API copies every
page, the WAL's included, inside one read transaction: a snapshot of one moment, taken while the writer goes
on (WAL readers never block it). The copy is written next to its destination, checked, converted to a
single self-contained file (rollback journal; pipemon turns WAL back on when it opens it) and renamed into
place, so a failed backup never leaves a half-written FILE.
"""
from __future__ import annotations

import os
import shlex
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import sqlalchemy as sa

from pipemon.store.db import normalize_url


class BackupError(Exception):
    """A backup that could not be taken; the message says why, naming the file."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    seconds: float
    revision: str | None
    counts: dict[str, int]  # rows per table: what the copy holds


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL; None for another backend."""
    u = sa.make_url(normalize_url(url))
    if not u.drivername.startswith("sqlite"):
        return None
    if not u.database or u.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(u.database)


def backup_sqlite(source: Path, dest: Path, *, overwrite: bool = False) -> BackupResult:
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    if dest.exists() and not overwrite:
        raise BackupError(f"{dest} exists (--force to replace it)")
    if not dest.parent.is_dir():
        raise BackupError(f"no directory {dest.parent} for the backup")
    if dest.resolve() == source.resolve():
        raise BackupError("the backup would overwrite the database itself")
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    t0 = time.monotonic()
    src = sqlite3.connect(source, timeout=30)
    try:
        _check_pipemon(src, source)
        out = sqlite3.connect(partial)
        try:
            src.backup(out)  # all pages in one step: one read transaction, one moment
            out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            ok = out.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise BackupError(f"the copy failed its integrity check: {ok}")
            counts = {t: out.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608 -- fixed names
                      for t in ("pipelines", "runs", "events", "alerts")}
            revision = out.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            out.close()
    except sqlite3.Error as e:
        partial.unlink(missing_ok=True)
        raise BackupError(f"cannot back up {source}: {e}") from None
    except BackupError:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return BackupResult(dest, dest.stat().st_size, time.monotonic() - t0, revision[0] if revision else None,
                        counts)


def _check_pipemon(conn: sqlite3.Connection, path: Path) -> None:
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise BackupError(f"{path} is not a SQLite database ({e})") from None
    if not {"events", "runs", "alembic_version"} <= tables:
        raise BackupError(f"{path} is not a pipemon database (no events, runs or alembic_version table)")


def pg_dump_command(url: str, dest: str) -> str:
    """The pg_dump command that backs up this PostgreSQL database (its schema only, when the URL sets a
    search_path), without the password: pg_dump takes it from PGPASSWORD or ~/.pgpass."""
    u = sa.make_url(normalize_url(url))
    query = dict(u.query)
    schema = None
    options = query.get("options")
    if isinstance(options, str):
        for part in unquote(options).split():
            if part.startswith("-csearch_path="):
                schema = part.split("=", 1)[1].split(",")[0]
    libpq = sa.URL.create("postgresql", username=u.username, host=u.host, port=u.port, database=u.database,
                          query=u.query).render_as_string(hide_password=False)  # no password, ever
    cmd = ["pg_dump", "--format=custom", f"--file={dest}"]
    if schema:
        cmd.append(f"--schema={schema}")
    return " ".join(shlex.quote(c) for c in [*cmd, libpq])
