"""A schedule given by a config reload applies to a pipeline that already exists: its detectors are told
again, so it goes late at the new schedule's deadline (issue 11, item 6)."""
from __future__ import annotations

from pipemon.config import loads
from tests.conftest import T0


def test_a_schedule_added_on_reload_makes_an_existing_pipeline_late(pm, client, clock):
    r = client.post("/api/v1/events", json=[
        {"pipeline": p, "run_id": "1", "type": "COMPLETE", "duration_s": 5, "event_time": T0}
        for p in ("s/job", "s/other")])
    assert r.status_code == 200, r.text
    pm.reconfigure(loads('pipelines:\n  - {match: "s/job", schedule: "0 * * * *", grace: 10m}\n'))
    clock.set(T0 + 3 * 3600)
    pm.writer.tick()
    job = client.get("/api/v1/pipelines/s%2Fjob").json()
    other = client.get("/api/v1/pipelines/s%2Fother").json()
    assert job["state"] == "late" and job["declared"]["schedule"] == "0 * * * *"
    assert other["state"] == "healthy"


def test_a_teams_calendar_given_on_reload_reaches_its_existing_pipelines(pm, client):
    r = client.post("/api/v1/events", json=[
        {"pipeline": p, "run_id": "1", "type": "COMPLETE", "duration_s": 5, "event_time": T0, "team": t}
        for p, t in (("s/job", "shop"), ("o/job", "ops"))])
    assert r.status_code == 200, r.text
    engine = pm.health.judge
    assert engine.detect.spec_of("s/job").calendar is None
    pm.reconfigure(loads("teams: [{name: shop, calendar: US}, {name: ops}]\n"))
    assert engine.detect.spec_of("s/job").calendar == "US" and engine.detect.spec_of("s/job").holidays
    assert engine.detect.spec_of("o/job").calendar is None
