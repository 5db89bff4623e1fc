"""Item 7: the database URL's password never shows: not in the start-up line, not in an error that names
the URL, not in the writer's logs, not in the repr of the service object."""
from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pipemon.cli import app as cli
from pipemon.store.db import redact
from tests.conftest import LiveServer

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(("url", "shown"), [
    (f"postgresql://pm:{SECRET}@db.example:5432/pipemon", "postgresql+psycopg://pm:***@db.example:5432/pipemon"),
    (f"postgresql+psycopg://pm:{SECRET}@db/pm?sslmode=require", "postgresql+psycopg://pm:***@db/pm?sslmode=require"),
    ("postgresql+psycopg://pm@db/pm", "postgresql+psycopg://pm@db/pm"),
    ("sqlite:///var/lib/pipemon.db", "sqlite:///var/lib/pipemon.db"),
    ("pipemon.db", "sqlite:///pipemon.db"),
])
def test_redact(url, shown):
    assert redact(url) == shown


def test_serve_and_upgrade_errors_hide_the_password():
    url = f"postgresql://pm:{SECRET}@127.0.0.1:1/pipemon"  # nothing listens on port 1
    for args in (["serve", "--db", url], ["db", "upgrade", "--db", url]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 1, r.output
        assert SECRET not in r.output
        assert "pm:***@127.0.0.1:1" in r.output  # still says which database


def with_password(url: str) -> str:
    return sa.make_url(url).set(password=SECRET).render_as_string(hide_password=False)


@pytest.mark.slow
@pytest.mark.postgres
def test_startup_line_logs_and_repr_hide_the_password(owned_db, tmp_path, caplog):
    url = with_password(owned_db[0])  # the shared test server trusts local connections: password ignored
    server = LiveServer(url, tmp_path).start()
    server.stop()
    out = server.logs()
    assert "pipemon listening on" in out and ":***@" in out
    assert SECRET not in out

    from pipemon.app import build
    pm = build(url, deliver=False)
    try:
        assert SECRET not in repr(pm) and SECRET not in pm.safe_db_url
        with caplog.at_level(logging.DEBUG, logger="pipemon"):
            pm.writer._lost(sa.exc.OperationalError("SELECT 1", {}, Exception(f"auth failed for {url}")), [])
        assert caplog.records and all(SECRET not in r.getMessage() for r in caplog.records)
    finally:
        pm.close()
