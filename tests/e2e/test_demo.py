"""`pipemon demo`: the service with the simulated fleet, live; and `--export`."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx

from tests.conftest import free_port


def test_demo_serves_the_simulated_fleet(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipemon", "demo", "--port", str(port), "--db",
                             f"sqlite:///{tmp_path / 'demo.db'}", "--history-days", "1", "--speed", "600",
                             "--config-out", str(tmp_path / "demo.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        summary = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                summary = httpx.get(url + "/api/v1/summary", timeout=2).json()
                healthy = summary["by_state"]["healthy"] + summary["by_state"]["failing"]
                if summary["pipelines"] >= 200 and healthy >= 100:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        assert summary and summary["pipelines"] >= 200 and len(summary["teams"]) >= 6, summary
        runs = httpx.get(url + "/api/v1/pipelines", params={"limit": 5}, timeout=5).json()["items"]
        assert any(p["last_run"] for p in runs)
        assert (tmp_path / "demo.yaml").read_text().startswith("# pipemon.yaml")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "240 pipelines" in out
    assert "━" not in out and "replaying history" not in out  # piped: no progress bar


def test_demo_export_writes_openlineage_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    out = subprocess.run([sys.executable, "-m", "pipemon", "demo", "--export", str(path), "--days", "0.5"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = path.read_text().splitlines()
    assert len(lines) > 1000
    first = json.loads(lines[0])
    assert {"eventTime", "eventType", "run", "job", "producer", "schemaURL"} <= set(first)
    assert (tmp_path / "events.incidents.jsonl").exists()
