"""Long work shows a progress bar with rate and time left on a terminal, and nothing when piped."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipemon.cli import app

PIPED = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None}
TERMINAL = {"FORCE_COLOR": None, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
BAR = "━"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("progress")
    runs = tmp / "runs.jsonl"
    runs.write_text("".join(json.dumps({"pipeline_id": f"p{k % 20}", "ts_unix": 1.7e9 + k * 3600,
                                        "duration_s": 60, "rows": 1000, "status": "success"}) + "\n"
                            for k in range(10_000)))
    events = tmp / "events.jsonl"
    events.write_text("".join(json.dumps({"pipeline": "a/b", "run_id": str(k), "type": t,
                                          "event_time": 1.7e9 + k * 600 + (60 if t == "FAIL" else 0)}) + "\n"
                              for k in range(50) for t in ("START", "FAIL")))
    cfg = tmp / "pipemon.yaml"
    cfg.write_text("{}\n")
    return {"runs": runs, "events": events, "config": cfg, "tmp": tmp}


def commands(files):
    tmp = files["tmp"]
    return {
        "detect": (["detect", "-i", str(files["runs"]), "-o", str(tmp / "flags.jsonl")],
                   ["reading", "detecting", "runs/s"]),
        "replay": (["replay", "-c", str(files["config"]), "-i", str(files["events"])], ["replaying", "B/s"]),
        "demo --export": (["demo", "--export", str(tmp / "ex.jsonl"), "--days", "0.5", "--pipelines", "200"],
                          ["simulating", "days/s"]),
    }


@pytest.mark.parametrize("name", ["detect", "replay", "demo --export"])
def test_quiet_when_piped_and_a_bar_on_a_terminal(files, name):
    args, words = commands(files)[name]
    piped = CliRunner().invoke(app, args, env=PIPED)
    assert piped.exit_code == 0, piped.output
    assert BAR not in piped.stderr and " left" not in piped.stderr and "\x1b" not in piped.stderr
    shown = CliRunner().invoke(app, args, env=TERMINAL)
    assert shown.exit_code == 0, shown.output
    assert BAR in shown.stderr and "left" in shown.stderr
    for w in words:
        assert w in shown.stderr, w


@pytest.mark.slow
def test_the_demos_history_replay_shows_a_bar_on_a_terminal(tmp_path: Path):
    """The piped case is tests/e2e/test_demo.py (no bar in its output)."""
    import os
    import subprocess
    import sys

    from tests.conftest import free_port

    env = {**os.environ, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pipemon", "demo", "--port", str(free_port()), "--db",
                             f"sqlite:///{tmp_path / 'demo.db'}", "--history-days", "1", "--speed", "600",
                             "--config-out", str(tmp_path / "demo.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    seen = b""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while b"history replayed" not in seen and time.monotonic() < deadline and proc.poll() is None:
            seen += proc.stdout.read1(65536)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    text = seen.decode(errors="replace")
    assert "history replayed" in text and "replaying history" in text
    assert BAR in text and "days/s" in text and "left" in text
