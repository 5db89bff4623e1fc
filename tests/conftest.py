"""Shared fixtures. Store-touching tests run on SQLite and on PostgreSQL; the PostgreSQL leg needs
PIPEMON_TEST_POSTGRES_URL (set by .ci/run) and skips with that reason where it is unset."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from pipemon.clock import FakeClock
from pipemon.config import Settings

PG_URL = os.environ.get("PIPEMON_TEST_POSTGRES_URL")
NATS_URL = os.environ.get("PIPEMON_TEST_NATS_URL")
T0 = 1_790_000_000.0  # 2026-09-21T…Z, a fixed "now" for fake clocks


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database URL on each backend (PostgreSQL: a schema of its own, dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pipemon.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL leg: PIPEMON_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    from pipemon.store.db import normalize_url
    admin = sa.create_engine(normalize_url(PG_URL))
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(normalize_url(PG_URL), schema)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def pm(db_url, settings, clock):
    """A Pipemon without threads: ingest() and tick() run inline, so tests are deterministic."""
    from pipemon.app import build
    p = build(db_url, settings, clock=clock)
    yield p
    p.close()


@pytest.fixture
def client(pm):
    from fastapi.testclient import TestClient

    from pipemon.api.app import create_app
    with TestClient(create_app(pm), raise_server_exceptions=False) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`pipemon serve` in a subprocess: the real HTTP server, as users run it."""

    def __init__(self, db: str, tmp: Path, config: str | None = None, extra: list[str] | None = None):
        self.db, self.tmp, self.config, self.extra = db, tmp, config, extra or []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> LiveServer:
        cmd = [sys.executable, "-m", "pipemon", "serve", "--db", self.db, "--port", str(self.port), *self.extra]
        if self.config:
            cmd += ["--config", self.config]
        self.log = open(self.tmp / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pipemon serve exited with {self.proc.returncode}: {self.logs()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()  # a slow start must not leave the server running after the test has given up on it
        raise RuntimeError(f"pipemon serve did not start: {self.logs()}")

    def logs(self) -> str:
        return (self.tmp / f"server-{self.port}.log").read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def live_server(db_url, tmp_path):
    servers: list[LiveServer] = []

    def start(config: str | None = None, extra: list[str] | None = None) -> LiveServer:
        s = LiveServer(db_url, tmp_path, config, extra).start()
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


# Fixed Bearer strings -> callers, for tests of what each team may see, until real tokens exist: the one
# place to switch to tokens made with `pipemon token create` (set app.state.resolve_caller from auth).
TEST_CALLERS = {
    "alpha-viewer": ("alpha-viewer", "viewer", "alpha"),
    "beta-viewer": ("beta-viewer", "viewer", "beta"),
    "gamma-viewer": ("gamma-viewer", "viewer", "gamma"),
    "org-admin": ("org-admin", "org-admin", None),
}


@pytest.fixture
def as_team():
    """as_team(app) installs a resolve hook on the app; returns headers(name) -> the Authorization header."""
    from pipemon.access import Caller, Role
    from pipemon.errors import Unauthorized

    def resolve(request):
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token not in TEST_CALLERS:
            raise Unauthorized("no valid token")
        name, role, team = TEST_CALLERS[token]
        return Caller(name=name, role=Role(role), team=team)

    def install(app):
        app.state.resolve_caller = resolve
        return lambda who: {"Authorization": f"Bearer {who}"}
    return install
