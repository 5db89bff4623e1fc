"""`pipemon backup` as an operator uses it: taken from a running server under ingest load, restored by copying
it into place, read by a new server and `pipemon status`. Every event acknowledged before the backup began is
in it; nothing in it was never acknowledged. And the PostgreSQL side: the printed pg_dump command works."""
from __future__ import annotations

import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import PG_URL, LiveServer, _pg_schema_url

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipemon", *args], capture_output=True, text=True,
                          timeout=timeout)


class Loader(threading.Thread):
    """Posts batches of 20 finished runs (one event each) until stopped; records what was acknowledged
    and when."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop_at = url, threading.Event()
        self.acked: list[tuple[float, list[str]]] = []  # (monotonic time of the 2xx, run ids)
        self.errors = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            i = 0
            while not self.stop_at.is_set() and i < 5_000:
                ids = [f"r-{uuid.uuid4().hex}" for _ in range(20)]
                body = [{"pipeline": f"bk/p{(i + k) % 25}", "run_id": rid, "type": "COMPLETE",
                         "duration_s": 5, "metrics": {"rows": 100}} for k, rid in enumerate(ids)]
                try:
                    r = http.post("/api/v1/events", json=body)
                    if r.status_code < 300:
                        self.acked.append((time.monotonic(), ids))
                    else:
                        self.errors += 1
                except httpx.HTTPError:
                    self.errors += 1
                i += 1

    def acked_before(self, t: float) -> set[str]:
        return {rid for at, ids in self.acked if at < t for rid in ids}

    def all_acked(self) -> set[str]:
        return {rid for _, ids in self.acked for rid in ids}


def run_ids(path) -> set[str]:
    c = sqlite3.connect(path)
    try:
        return {r[0] for r in c.execute("SELECT run_id FROM runs")}
    finally:
        c.close()


def test_backup_under_load_restores_to_what_was_committed(tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    db = live / "pipemon.db"
    server = LiveServer(f"sqlite:///{db}", tmp_path).start()
    loader = Loader(server.url)
    loader.start()
    try:
        deadline = time.monotonic() + 60
        while len(loader.acked) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(loader.acked) >= 30, f"the load did not get going ({loader.errors} errors)"
        began = time.monotonic()
        out = cli("backup", str(tmp_path / "backup.db"), "--db", f"sqlite:///{db}")
        ended = time.monotonic()
        assert out.returncode == 0, out.stderr
        assert "backed up" in out.stdout and "revision" in out.stdout
        after = len(loader.acked)
        time.sleep(0.5)
        assert len(loader.acked) > after, "ingest stalled while the backup ran"
    finally:
        loader.stop_at.set()
        loader.join(30)
        server.stop()

    in_backup = run_ids(tmp_path / "backup.db")
    must = loader.acked_before(began)
    assert must and must <= in_backup, f"{len(must - in_backup)} acknowledged before the backup are missing"
    assert in_backup <= loader.all_acked()  # nothing that was never acknowledged
    assert len(in_backup) < len(loader.all_acked())  # it is a snapshot: the load went on after it
    assert len(loader.acked_before(ended)) >= len(in_backup) - 20 * 4  # and of a moment during the backup

    # Restore: stop (done), remove the WAL and shared-memory files, copy the backup into place, start.
    for suffix in ("-wal", "-shm"):
        (live / f"pipemon.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "backup.db", db)
    restored = LiveServer(f"sqlite:///{db}", tmp_path).start()
    try:
        status = cli("status", "--url", restored.url)
        assert status.returncode == 0, status.stderr
        assert "bk/p0" in status.stdout and "bk/p24" in status.stdout
        summary = httpx.get(f"{restored.url}/api/v1/summary").json()
        assert summary["pipelines"] == 25
        served: set[str] = set()
        for i in range(25):
            cursor = None
            while True:
                page = httpx.get(f"{restored.url}/api/v1/pipelines/bk%2Fp{i}/runs",
                                 params={"limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
                served |= {r["run_id"] for r in page["items"]}
                cursor = page["next_cursor"]
                if not cursor:
                    break
        assert served == in_backup
    finally:
        restored.stop()


def test_a_plain_copy_of_the_database_file_is_not_a_backup(tmp_path):
    """What the command exists for: the latest commits sit in the WAL, so copying pipemon.db misses them."""
    db = tmp_path / "pipemon.db"
    server = LiveServer(f"sqlite:///{db}", tmp_path).start()
    try:
        r = httpx.post(f"{server.url}/api/v1/events", json=[
            {"pipeline": "bk/one", "run_id": "only", "type": "COMPLETE", "duration_s": 1}])
        assert r.status_code == 200
        shutil.copyfile(db, tmp_path / "naive.db")
        assert cli("backup", str(tmp_path / "good.db"), "--db", str(db)).returncode == 0
    finally:
        server.stop()
    naive = sqlite3.connect(tmp_path / "naive.db")
    try:  # the copy lacks the commit, and usually even the tables (still in the WAL, not checkpointed)
        tables = {r[0] for r in naive.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "runs" not in tables or "only" not in {r[0] for r in naive.execute("SELECT run_id FROM runs")}
    finally:
        naive.close()
    assert "only" in run_ids(tmp_path / "good.db")


@pytest.mark.parametrize("args,message", [
    (["missing.db"], "no SQLite database at"),
    (["notadb"], "is not a SQLite database"),
    (["empty.db"], "is not a pipemon database"),
])
def test_bad_sources_are_named_errors(tmp_path, args, message):
    (tmp_path / "notadb").write_text("hello, not a database\n" * 100)
    sqlite3.connect(tmp_path / "empty.db").execute("CREATE TABLE t (x)").connection.close()
    out = cli("backup", str(tmp_path / "out.db"), "--db", str(tmp_path / args[0]))
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out.db").exists() and not (tmp_path / "out.db.partial").exists()


def test_an_existing_file_is_kept_unless_forced(tmp_path):
    db = tmp_path / "p.db"
    assert cli("db", "upgrade", "--db", str(db)).returncode == 0
    (tmp_path / "b.db").write_text("precious")
    out = cli("backup", str(tmp_path / "b.db"), "--db", str(db))
    assert out.returncode == 1 and "exists (--force" in out.stderr
    assert (tmp_path / "b.db").read_text() == "precious"
    assert cli("backup", str(tmp_path / "b.db"), "--db", str(db), "--force").returncode == 0
    assert run_ids(tmp_path / "b.db") == set()


def test_postgresql_prints_a_pg_dump_command_that_works_and_hides_the_password(tmp_path):
    out = cli("backup", "x.dump", "--db", "postgresql://etl:s3cr3t@db.internal:5432/pm?sslmode=require")
    assert out.returncode == 0 and "s3cr3t" not in out.stdout + out.stderr
    assert "pg_dump --format=custom --file=x.dump 'postgresql://etl@db.internal:5432/pm?sslmode=require'" \
        in out.stdout
    if not PG_URL or not shutil.which("pg_dump"):
        pytest.skip("the command's run needs PIPEMON_TEST_POSTGRES_URL and pg_dump")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        url = _pg_schema_url(PG_URL, schema)
        assert cli("db", "upgrade", "--db", url).returncode == 0
        dump = tmp_path / "pm.dump"
        out = cli("backup", str(dump), "--db", url)
        [line] = [ln.strip() for ln in out.stdout.splitlines() if ln.strip().startswith("pg_dump ")]
        assert f"--schema={schema}" in line
        ran = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True,
                                 timeout=60)
        assert f"TABLE {schema} events" in listing.stdout and f"TABLE {schema} event_dicts" in listing.stdout
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
