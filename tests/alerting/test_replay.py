"""`pipemon replay`: the engine over recorded events, nothing sent, every would-be notification written."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipemon import sim

CONFIG = """
receivers:
  - name: team-hook
    webhook: {url: "http://127.0.0.1:9/never-called"}
route:
  receiver: team-hook
  group_by: [team]
  group_wait: 30s
  group_interval: 5m
"""


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "events.jsonl"
    sim.export(path, days=2, pipelines=200, seed=3)
    return path


def test_replay_writes_the_notifications_it_would_send(events, tmp_path):
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "notifications.jsonl"
    run = subprocess.run([sys.executable, "-m", "pipemon", "replay", "--config", str(cfg), "--input", str(events),
                          "--output", str(out), "--until", "2025-01-08T06:00:00Z", "--summary"],
                         capture_output=True, text=True, timeout=600, env={"COLUMNS": "200", "PATH": ""})
    assert run.returncode == 0, run.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines, "the simulated incidents must notify someone"
    for n in lines:
        assert set(n) >= {"time", "receiver", "action", "group_key", "alerts"}
        assert n["receiver"] == "team-hook" and n["action"] in ("trigger", "repeat", "resolve", "escalate")
        for a in n["alerts"]:
            assert set(a) >= {"fingerprint", "pipeline", "team", "kind", "severity"} and "/" in a["pipeline"]
    times = [n["time"] for n in lines]
    assert times == sorted(times)
    assert {a["kind"] for n in lines for a in n["alerts"]} >= {"failure"}
    assert "pages per team" in run.stdout and "naive" in run.stdout
    assert "events/s" in run.stderr

    # the same input and config give the same notifications: replay is deterministic
    out2 = tmp_path / "again.jsonl"
    subprocess.run([sys.executable, "-m", "pipemon", "replay", "--config", str(cfg), "--input", str(events),
                    "--output", str(out2), "--until", "2025-01-08T06:00:00Z"], capture_output=True, timeout=600,
                   check=True)
    strip = lambda ls: [{k: v for k, v in json.loads(x).items()} for x in ls]  # noqa: E731
    assert strip(out2.read_text().splitlines()) == strip(out.read_text().splitlines())


def test_replay_rejects_bad_lines_and_a_bad_config(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("route: {receiver: nobody}\n")
    src = tmp_path / "in.jsonl"
    src.write_text('{"pipeline": "a/b", "type": "COMPLETE", "event_time": 1790000000, "duration_s": 5}\nnot json\n')
    run = subprocess.run([sys.executable, "-m", "pipemon", "replay", "--config", str(cfg), "--input", str(src)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "bad.yaml:1: route.receiver: no receiver named 'nobody'" in run.stderr
    cfg.write_text("")
    run = subprocess.run([sys.executable, "-m", "pipemon", "replay", "--config", str(cfg), "--input", str(src)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "replayed 2 events (1 rejected)" in run.stderr


def test_committing_once_an_hour_of_event_time_changes_no_notification(events, monkeypatch):
    # replay holds one transaction per hour of event time; the live writer commits every batch and tick
    import contextlib
    import io

    from pipemon.config import loads
    from pipemon.replay import replay
    from pipemon.writer.writer import Writer

    def notifications() -> list[dict]:
        out = io.StringIO()
        with open(events, "rb") as src:
            res = replay(loads(CONFIG), src, out, until=None)
        assert res.notifications > 0
        return [json.loads(x) for x in out.getvalue().splitlines()]

    held = notifications()
    monkeypatch.setattr(Writer, "one_transaction", lambda self: contextlib.nullcontext())
    assert notifications() == held


def test_one_transaction_is_refused_while_the_writer_thread_runs(tmp_path):
    from pipemon.app import build
    pm = build(f"sqlite:///{tmp_path / 'p.db'}", deliver=False)
    pm.writer.start()
    try:
        with pytest.raises(RuntimeError, match="not the live thread"):
            with pm.writer.one_transaction():
                pass
    finally:
        pm.close()
