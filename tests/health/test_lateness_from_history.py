"""Lateness from history (issue 10, item 6), through the real service with a fake clock: a declared pipeline
whose history arrives late is judged against it at once, and its reason's lateness figure is current when read."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipemon.config import loads

DAY0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC


def at(day: int, hh: int, mm: int = 0) -> float:
    return DAY0 + day * 86400 + hh * 3600 + mm * 60


@pytest.fixture
def clock():
    from pipemon.clock import FakeClock
    return FakeClock(at(9, 10))   # the service starts on Wednesday of the next week, 10:00


@pytest.fixture
def settings():
    return loads("""
pipelines:
  - match: "finance/ledger"
    team: finance
    schedule: "0 2 * * *"
    grace: 1h
""")


def _run(run_id: str, start: float, end: float) -> list[dict]:
    return [{"pipeline": "finance/ledger", "run_id": run_id, "type": "START", "event_time": start},
            {"pipeline": "finance/ledger", "run_id": run_id, "type": "COMPLETE", "event_time": end}]


def _state(client) -> dict:
    r = client.get("/api/v1/pipelines/finance%2Fledger")
    assert r.status_code == 200, r.text
    return r.json()


def test_imported_history_two_days_old_makes_a_declared_pipeline_late_at_once(pm, client, clock):
    pm.writer.tick()
    assert _state(client)["state"] == "unknown"       # declared, watched from now: nothing owed yet
    # the history is imported now: daily runs up to Monday 02:05, two days ago
    events = [e for d in (5, 6, 7) for e in _run(f"r{d}", at(d, 2, 5), at(d, 2, 25))]
    r = client.post("/api/v1/events", json=events)
    assert r.status_code == 200, r.text
    clock.set(at(9, 10, 1))
    pm.writer.tick()
    p = _state(client)
    assert p["state"] == "late", p
    # the reason names the first unserved slot (Tuesday 02:00) and how late it is as of this read ...
    assert "Tue 2026-11-10 02:00 UTC slot" in p["reason"], p["reason"]
    assert p["reason"].startswith("32h01m late: "), p["reason"]
    assert "n/a" not in p["reason"]
    # ... and the figure moves with the clock, without any tick or new event
    clock.set(at(9, 12, 31))
    assert _state(client)["reason"].startswith("34h31m late: ")
    # a run for today's slot serves it: no longer late
    clock.set(at(9, 16, 40))
    assert client.post("/api/v1/events", json=_run("r9", at(9, 16, 32), at(9, 16, 40))).status_code == 200
    pm.writer.tick()
    p = _state(client)
    assert p["state"] == "healthy", p
