"""A restart keeps every baseline: the engine's state is checkpointed (JSON) and what came after the last
checkpoint is replayed from the store."""
from __future__ import annotations

import msgspec

from pipemon.app import build
from pipemon.clock import FakeClock
from pipemon.ingest import native

T0 = 1_790_000_000.0


def history(n: int, pipeline: str = "rs/daily") -> list:
    evs = []
    for i in range(n):
        start = T0 + i * 86400
        evs += native.parse(msgspec.json.encode([
            {"pipeline": pipeline, "run_id": f"r{i}", "type": "START", "event_time": start},
            {"pipeline": pipeline, "run_id": f"r{i}", "type": "COMPLETE", "event_time": start + 600 + (i % 5) * 7,
             "metrics": {"rows": 1000 + (i % 3) * 10}}]), 0)
    return evs


def test_a_clean_restart_keeps_every_baseline(db_url):
    clock = FakeClock(T0)
    pm = build(db_url, clock=clock, deliver=False)
    for ev in history(20):
        clock.set(ev.time)
        pm.writer.ingest([ev])
    before = pm.health.judge.to_json("rs/daily")
    pm.close()
    pm2 = build(db_url, clock=clock, deliver=False)
    pm2.writer._load()
    assert pm2.health.judge.to_json("rs/daily") == before
    pm2.close()


def test_after_a_crash_the_runs_since_the_checkpoint_are_replayed(db_url):
    clock = FakeClock(T0)
    pm = build(db_url, clock=clock, deliver=False)
    pm.health.checkpoint_s = 1e18  # no checkpoint after the one at start-up
    evs = history(20)
    for ev in evs:
        clock.set(ev.time)
        pm.writer.ingest([ev])
    health_before, detect_before = pm.health.judge.to_json("rs/daily")
    pm.writer._conn.close()  # a crash: no stop, no final checkpoint
    pm.db.dispose()
    pm2 = build(db_url, clock=clock, deliver=False)
    pm2.writer._load()
    health_after, detect_after = pm2.health.judge.to_json("rs/daily")
    assert health_after["runs_total"] == health_before["runs_total"] == 20
    assert health_after["durations"] == health_before["durations"]
    assert detect_after["metrics"].keys() == detect_before["metrics"].keys()
    assert detect_after["metrics"]["duration_s"] == detect_before["metrics"]["duration_s"]
    pm2.close()
