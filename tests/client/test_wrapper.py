"""The command wrapper as a process runs it: what it reports, what it passes through. The reports go to a
recording transport (the wire format is checked here; tests/client/test_light_install.py and
tests/e2e/test_sdk_and_cli.py send them to a real server)."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from pipemon_client import Client
from pipemon_client.wrapper import run_command


class Recorder:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json={})

    @property
    def events(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]


def wrap(command: list[str], status: int = 200, env: dict | None = None, token: str | None = "tok-1"):
    rec = Recorder(status)
    client = Client("http://pipemon.test", token, transport=httpx.MockTransport(rec), attempts=1)
    out = io.BytesIO()
    code = run_command(client, "cron/job", command, team="data", out=out, environ=env or {"PATH": os.defpath})
    return code, out.getvalue(), rec


def test_a_failing_command_is_reported_with_its_exit_code_and_tail():
    code, out, rec = wrap(["sh", "-c", "echo loading; echo 'ERROR: disk full' >&2; exit 3"])
    assert code == 3 and out == b"loading\nERROR: disk full\n"
    start, end = rec.events
    assert [start[k] for k in ("type", "namespace", "name", "team")] == ["START", "cron", "job", "data"]
    assert end["run_id"] == start["run_id"] and end["type"] == "FAIL"
    assert end["error"] == {"message": "exit code 3", "type": "ExitCode"}
    assert end["metrics"] == {"exit_code": 3} and end["log"] == "loading\nERROR: disk full\n"
    assert "duration_s" not in end  # the START was accepted: the server knows the duration
    assert all(r.headers["authorization"] == "Bearer tok-1" and r.url.path == "/api/v1/events"
               for r in rec.requests)


def test_success_passes_zero_through():
    code, out, rec = wrap(["true"])
    assert code == 0 and out == b"" and [e["type"] for e in rec.events] == ["START", "COMPLETE"]
    assert rec.events[1]["metrics"] == {"exit_code": 0}


def test_it_runs_from_a_thread_too():  # signal handlers can only be set in the main thread: none are
    import threading
    got: list = []
    t = threading.Thread(target=lambda: got.append(wrap(["sh", "-c", "exit 4"])[0]))
    t.start()
    t.join(30)
    assert got == [4]


def test_secrets_in_the_output_or_the_environment_never_leave_the_host():
    env = {"PATH": os.defpath, "DB_PASSWORD": "hunter2-prod"}
    code, out, rec = wrap(["sh", "-c", 'echo "connecting with $DB_PASSWORD"; echo "token=abcdef123456"; '
                                       'echo "auth tok-1"; exit 1'], env=env)
    assert code == 1 and b"hunter2-prod" in out  # the operator's own terminal still sees everything
    log = rec.events[1]["log"]
    assert "hunter2-prod" not in log and "abcdef123456" not in log and "tok-1" not in log
    assert log.count("<redacted>") == 3


def test_a_command_killed_by_a_signal_exits_128_plus_n():
    code, _, rec = wrap(["sh", "-c", "kill -TERM $$"])
    assert code == 143
    assert rec.events[1]["error"]["message"] == "killed by SIGTERM (exit 143)"
    assert rec.events[1]["metrics"] == {"exit_code": 143}


@pytest.mark.parametrize("mode,code", [(None, 127), (0o644, 126), (0o755, 126)])
def test_a_command_that_cannot_start(tmp_path, mode, code):
    path = tmp_path / "job"  # missing, not executable, not a program
    if mode is not None:
        path.write_bytes(b"\x00\x01 not a program")
        path.chmod(mode)
    got, _, rec = wrap([str(path)])
    assert got == code
    assert rec.events[1]["type"] == "FAIL" and "cannot start '" in rec.events[1]["error"]["message"]


def test_with_pipemon_refusing_the_command_still_runs_and_the_end_carries_its_duration():
    code, out, rec = wrap(["sh", "-c", "sleep 0.2; echo done"], status=503)
    assert code == 0 and out == b"done\n"
    assert rec.events[1]["duration_s"] >= 0.2  # no START was stored: the end says how long it ran


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _wrapper(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from pipemon_client.wrapper import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_sigterm_to_the_wrapper_reaches_the_command_and_its_exit_code_comes_back():
    script = "trap 'echo got TERM; exit 5' TERM; echo ready; while true; do sleep 0.05; done"
    p = _wrapper("--url", _closed_port_url(), "cron/term", "--", "sh", "-c", script)
    assert p.stdout is not None
    deadline = time.monotonic() + 20
    line = b""
    while b"ready" not in line and time.monotonic() < deadline:
        line = p.stdout.readline()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 5 and b"got TERM" in out
    assert b"failed (exit code 5)" in err and b"unreachable" in err


@pytest.mark.parametrize("args,message", [
    (["cron/x"], "give the command after --"),
    (["nopipeline", "--", "true"], "must be namespace/name"),
    (["--", "true"], "PIPELINE"),
    (["--url", "http://[::1", "cron/x", "--", "true"], "is not a valid URL"),
    (["--url", "ftp://files", "cron/x", "--", "true"], "must be http:// or https://"),
])
def test_bad_invocations_are_usage_errors(args, message):
    p = _wrapper(*args)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2 and message in err.decode() and b"Traceback" not in err
