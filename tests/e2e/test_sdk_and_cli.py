"""The Python SDK and the reporting commands, against a real server; and both with the server down."""
from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

import pipemon
from tests.conftest import LiveServer, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sdk")
    s = LiveServer(f"sqlite:///{tmp / 'p.db'}", tmp).start()
    yield s
    s.stop()


def runs(server, pipeline):
    return httpx.get(f"{server.url}/api/v1/pipelines/{pipeline.replace('/', '%2F')}/runs").json()["items"]


def cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "pipemon", *args], capture_output=True, text=True, timeout=timeout)


def test_context_manager_reports_success_with_metrics(server):
    client = pipemon.Client(server.url)
    with client.run("sdk/load", team="data") as run:
        time.sleep(0.05)
        run.metric(rows=123, bytes=456, files=3)
    [r] = runs(server, "sdk/load")
    assert (r["status"], r["rows"], r["bytes"], r["metrics"]) == ("succeeded", 123, 456, {"files": 3})
    assert r["duration_s"] >= 0.05


def test_decorator_reports_the_exception_and_lets_it_propagate(server):
    client = pipemon.Client(server.url)

    @client.monitor("sdk/flaky")
    def job():
        raise KeyError("customer_id")

    with pytest.raises(KeyError):
        job()
    [r] = runs(server, "sdk/flaky")
    assert r["status"] == "failed" and r["error"] == {"message": "'customer_id'", "type": "KeyError"}
    assert "KeyError" in r["log_excerpt"]


def test_a_monitor_that_is_down_never_breaks_the_pipeline(caplog):
    client = pipemon.Client(f"http://127.0.0.1:{free_port()}", timeout=0.5, attempts=3, backoff=0.05)
    t0 = time.monotonic()
    with client.run("sdk/down") as run:
        run.metric(rows=1)
        result = 42
    assert result == 42
    assert time.monotonic() - t0 < 5  # bounded: 2 reports x 3 attempts, each refused at once
    assert "unreachable after 3 attempts" in caplog.text


def test_a_rejected_report_is_not_retried(server, caplog):
    client = pipemon.Client(server.url, attempts=5)
    assert client.event("sdk/x", "EXPLODE") is False
    assert "rejected" in caplog.text and caplog.text.count("rejected") == 1


def test_send_command(server):
    out = cli("send", "cli/nightly", "--status", "success", "--duration", "90", "--rows", "1000", "--url", server.url)
    assert out.returncode == 0, out.stderr
    [r] = runs(server, "cli/nightly")
    assert (r["status"], r["duration_s"], r["rows"]) == ("succeeded", 90, 1000)
    out = cli("send", "not-a-pipeline", "--url", server.url)
    assert out.returncode == 2 and "namespace/name" in out.stderr


def test_run_wrapper_passes_the_exit_code_and_reports_the_tail(server):
    ok = cli("run", "cron/ok", "--url", server.url, "--", sys.executable, "-c", "print('hello'); print('done')")
    assert ok.returncode == 0 and "hello" in ok.stdout
    bad = cli("run", "cron/bad", "--url", server.url, "--", sys.executable, "-c",
              "import sys; print('partial'); sys.exit(7)")
    assert bad.returncode == 7
    [r_ok] = runs(server, "cron/ok")
    [r_bad] = runs(server, "cron/bad")
    assert r_ok["status"] == "succeeded" and r_ok["log_excerpt"] == "hello\ndone\n" and r_ok["duration_s"] > 0
    assert (r_bad["status"], r_bad["error"]["message"], r_bad["metrics"]) == ("failed", "exit code 7", {"exit_code": 7})
    assert "partial" in r_bad["log_excerpt"]


def test_run_wrapper_with_the_monitor_down_still_runs_the_command():
    url = f"http://127.0.0.1:{free_port()}"
    out = cli("run", "cron/x", "--url", url, "--", sys.executable, "-c", "import sys; print('work'); sys.exit(3)")
    assert out.returncode == 3 and "work" in out.stdout
    assert "unreachable" in out.stderr


def test_run_wrapper_missing_command(server):
    out = cli("run", "cron/missing", "--url", server.url, "--", "/nonexistent/binary")
    assert out.returncode == 127
    [r] = runs(server, "cron/missing")
    assert r["status"] == "failed" and "cannot start" in r["error"]["message"]


def test_db_upgrade_and_help(tmp_path):
    out = cli("db", "upgrade", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert out.returncode == 0 and "revision" in out.stdout
    for cmd in (["--help"], ["serve", "--help"], ["send", "--help"], ["run", "--help"], ["status", "--help"],
                ["db", "upgrade", "--help"]):
        assert cli(*cmd).returncode == 0


def test_status_with_the_service_down():
    out = cli("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 1 and "cannot reach pipemon" in out.stderr


def test_run_wrapper_redacts_secrets_and_bounds_the_tail(server):
    script = ("import os; print('x' * 100 + '\\n' * 3 + 'filler line\\n' * 2000); "
              "print('dsn postgresql://etl:' + os.environ['DB_PASSWORD'] + '@db/sales'); "
              "print('last: ' + os.environ['DB_PASSWORD']); raise SystemExit(2)")
    env = {**__import__("os").environ, "DB_PASSWORD": "pa55-w0rd-xyz"}
    out = subprocess.run([sys.executable, "-m", "pipemon", "run", "cron/secret", "--url", server.url, "--",
                          sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "pa55-w0rd-xyz" in out.stdout  # the terminal shows everything
    [r] = runs(server, "cron/secret")
    log = r["log_excerpt"]
    assert "pa55-w0rd-xyz" not in log and "postgresql://etl:<redacted>@db/sales" in log
    assert log.endswith("last: <redacted>\n") and log.startswith("…\nfiller line\n")
    assert len(log.encode()) <= 4096 + 4
