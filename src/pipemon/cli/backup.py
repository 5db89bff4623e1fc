"""`pipemon backup FILE`: a consistent copy of the database while pipemon runs."""
from __future__ import annotations

from pathlib import Path

import typer

from pipemon.cli import app
from pipemon.cli.serve import DbOption


@app.command()
def backup(file: Path = typer.Argument(..., help="Where to write the copy (SQLite) or the dump (PostgreSQL).",
                                       dir_okay=False),
           db: str = DbOption,
           force: bool = typer.Option(False, "--force", help="Replace FILE if it exists.")) -> None:
    """Back up the database, also while pipemon runs.

    SQLite: a consistent copy (the WAL's latest commits included), checked, written atomically to FILE.
    Restore: stop pipemon, delete pipemon.db-wal and pipemon.db-shm, copy FILE to pipemon.db, start.
    PostgreSQL: prints the pg_dump command to run (pg_dump is the tool for it)."""
    from pipemon.store import backup as bk
    from pipemon.store.db import redact

    try:
        path = bk.sqlite_path(db)
        if path is None:
            typer.echo("PostgreSQL: back it up with pg_dump (a consistent snapshot, also while pipemon runs; "
                       "the password from PGPASSWORD or ~/.pgpass):\n"
                       f"  {bk.pg_dump_command(db, str(file))}\n"
                       "restore into an empty database with: pg_restore --no-owner --dbname=URL FILE")
            return
        done = bk.backup_sqlite(path, file, overwrite=force)
    except bk.BackupError as e:
        typer.secho(f"backup failed: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except Exception as e:  # a URL that does not parse: say so, never with its password
        typer.secho(f"backup failed: cannot use the database URL {redact(db)} ({type(e).__name__})",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    c = done.counts
    typer.echo(f"backed up {path} to {done.path}: {done.size / 1e6:,.1f} MB at revision {done.revision}, "
               f"{c['pipelines']:,} pipelines, {c['runs']:,} runs, {c['events']:,} events, "
               f"{c['alerts']:,} alerts ({done.seconds:.1f} s)")
