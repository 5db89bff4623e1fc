"""The alerting commands against a real server and a local receiver."""
from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tests.alerting.receiver import Receiver
from tests.conftest import LiveServer


def cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "pipemon", *args], capture_output=True, text=True, timeout=timeout,
                          env={"COLUMNS": "220", "PATH": ""})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alertcli")
    rec = Receiver()
    cfg = tmp / "pipemon.yaml"
    cfg.write_text(f"""
receivers:
  - name: team
    webhook: {{url: "{rec.url}/team"}}
  - name: broken
    webhook: {{url: "{rec.url.rsplit(':', 1)[0]}:9/nowhere"}}
route:
  receiver: team
  group_wait: 0s
""")
    server = LiveServer(f"sqlite:///{tmp / 'p.db'}", tmp, str(cfg)).start()
    yield server, rec
    server.stop()
    rec.close()


def test_alerts_ack_resolve(setup):
    server, rec = setup
    now = time.time()
    httpx.post(server.url + "/api/v1/events", json=[
        {"pipeline": "cli/etl", "run_id": "1", "type": "START", "event_time": now - 30},
        {"pipeline": "cli/etl", "run_id": "1", "type": "FAIL", "event_time": now, "error": "no space left"}])
    rec.wait("/team", 1)
    out = cli("alerts", "--url", server.url)
    assert out.returncode == 0, out.stderr
    assert "cli/etl" in out.stdout and "failure" in out.stdout and "firing" in out.stdout
    aid = httpx.get(server.url + "/api/v1/alerts").json()["items"][0]["id"]
    out = cli("ack", str(aid), "--by", "carol", "--url", server.url)  # --by is ignored: the token's name
    assert out.returncode == 0 and "acknowledged by anonymous" in out.stdout
    assert [r["body"]["pipemon"]["action"] for r in rec.wait("/team", 2)] == ["trigger", "acknowledge"]
    out = cli("resolve", str(aid), "--url", server.url)
    assert out.returncode == 0 and "resolved" in out.stdout
    assert cli("ack", "999999", "--url", server.url).returncode == 1
    out = cli("notifications", "--url", server.url)
    assert out.returncode == 0 and "trigger" in out.stdout


def test_silences(setup):
    server, _ = setup
    out = cli("silence", "add", "-m", 'team="payments"', "-m", 'kind=~"late|sla_miss"', "--for", "2h",
              "--comment", "migration", "--author", "dave", "--url", server.url)
    assert out.returncode == 0 and "active" in out.stdout, out.stderr
    sid = out.stdout.split()[1]
    out = cli("silence", "list", "--url", server.url)
    assert "migration" in out.stdout and 'team="payments"' in out.stdout
    assert cli("silence", "expire", sid, "--url", server.url).stdout.strip().endswith("expired")
    bad = cli("silence", "add", "-m", "team", "--url", server.url)
    assert bad.returncode == 1 and "matchers" in bad.stderr
    bad = cli("silence", "add", "-m", 'team="x"', "--for", "soon", "--url", server.url)
    assert bad.returncode == 1 and "duration" in bad.stderr


def test_receivers_test(setup):
    server, rec = setup
    out = cli("receivers", "test", "team", "--url", server.url)
    assert out.returncode == 0 and "delivered" in out.stdout
    got = [r for r in rec.on("/team") if r["body"]["alerts"][0]["labels"].get("pipeline") == "pipemon/test"]
    assert [r["body"]["status"] for r in got] == ["firing", "resolved"]
    out = cli("receivers", "test", "broken", "--url", server.url)
    assert out.returncode == 1 and "broken" in out.stderr
    assert cli("receivers", "test", "nobody", "--url", server.url).returncode == 1


def test_findings_and_feedback_commands(setup):
    server, _ = setup
    out = cli("findings", "--url", server.url)
    assert out.returncode == 0
    out = cli("feedback", "424242", "expected", "--url", server.url)
    assert out.returncode == 1 and "no finding" in out.stderr
    assert cli("feedback", "1", "maybe", "--url", server.url).returncode == 2
