"""The health states with a fake clock: no test sleeps; the clock moves and the writer ticks."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipemon.config import loads

DAY0 = datetime(2026, 11, 2, tzinfo=timezone.utc).timestamp()  # a Monday, 00:00 UTC


def at(day: int, hh: int, mm: int = 0, ss: int = 0) -> float:
    return DAY0 + day * 86400 + hh * 3600 + mm * 60 + ss


@pytest.fixture
def clock():
    from pipemon.clock import FakeClock
    return FakeClock(at(0, 0, 0))


def run(pipeline, run_id, start, end=None, status="COMPLETE", rows=None, error=None, nominal=None):
    evs = [{"pipeline": pipeline, "run_id": run_id, "type": "START", "event_time": start}]
    if nominal is not None:
        evs[0]["nominal_time"] = nominal
    if end is not None:
        e = {"pipeline": pipeline, "run_id": run_id, "type": status, "event_time": end}
        if rows is not None:
            e["metrics"] = {"rows": rows}
        if error:
            e["error"] = {"message": error}
        evs.append(e)
    return evs


def unix(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def state(client, pipeline):
    r = client.get(f"/api/v1/pipelines/{pipeline.replace('/', '%2F')}")
    assert r.status_code == 200, r.text
    return r.json()


def advance_to(pm, clock, t):
    clock.set(t)
    pm.writer.tick()


DAILY = """
pipelines:
  - match: "finance/daily_close"
    team: finance
    tier: 1
    schedule: "0 2 * * *"
    grace: 1h
    max_duration: 2h
    sla: "06:00"
"""


@pytest.fixture
def settings():
    return loads(DAILY)


def test_declared_daily_pipeline_that_never_ran_is_late_just_after_its_deadline(pm, client, clock):
    p = state(client, "finance/daily_close")  # declared in the config: it exists before any event
    assert p["state"] == "unknown" and p["team"] == "finance" and p["tier"] == 1
    advance_to(pm, clock, at(0, 2, 59))
    assert state(client, "finance/daily_close")["state"] == "unknown"
    advance_to(pm, clock, at(0, 3, 0, 1))
    p = state(client, "finance/daily_close")
    assert p["state"] == "late", p
    assert "02:00" in p["reason"]
    # the run arrives: healthy again
    clock.set(at(0, 3, 10))
    client.post("/api/v1/events", json=run("finance/daily_close", "d0", at(0, 3, 5), at(0, 3, 10), rows=100))
    p = state(client, "finance/daily_close")
    assert p["state"] == "healthy", p
    assert p["schedule"]["next_expected"] == "2026-11-03T02:00:00Z"
    assert p["schedule"]["deadline"] == "2026-11-03T03:00:00Z"


def test_a_run_past_its_max_duration_is_running_long_while_it_runs(pm, client, clock):
    clock.set(at(0, 2, 0))
    client.post("/api/v1/events", json=run("finance/daily_close", "d0", at(0, 2, 0)))
    assert state(client, "finance/daily_close")["state"] == "unknown"  # first run, still running
    advance_to(pm, clock, at(0, 3, 59))
    assert state(client, "finance/daily_close")["state"] == "unknown"
    advance_to(pm, clock, at(0, 4, 0, 1))
    p = state(client, "finance/daily_close")
    assert p["state"] == "running_long" and "d0" in p["reason"], p
    clock.set(at(0, 4, 30))
    client.post("/api/v1/events", json=run("finance/daily_close", "d0", at(0, 2, 0), at(0, 4, 30)))
    assert state(client, "finance/daily_close")["state"] == "healthy"


def test_failure_then_fix(pm, client, clock):
    clock.set(at(0, 2, 30))
    client.post("/api/v1/events", json=run("finance/daily_close", "d0", at(0, 2, 0), at(0, 2, 30), status="FAIL",
                                           error="relation \"ledger\" does not exist"))
    p = state(client, "finance/daily_close")
    assert p["state"] == "failing" and "ledger" in p["reason"]
    clock.set(at(0, 3, 0))
    client.post("/api/v1/events", json=run("finance/daily_close", "d0-retry", at(0, 2, 40), at(0, 3, 0), status="FAIL",
                                           error="again"))
    assert "2 consecutive failures" in state(client, "finance/daily_close")["reason"]
    clock.set(at(0, 3, 20))
    client.post("/api/v1/events", json=run("finance/daily_close", "d0-fix", at(0, 3, 5), at(0, 3, 20)))
    p = state(client, "finance/daily_close")
    assert p["state"] == "healthy" and p["metrics"]["consecutive_failures"] == 0


def test_an_sla_miss_degrades_a_succeeding_pipeline(pm, client, clock):
    # days 0 and 1 meet the 06:00 SLA; on day 2 nothing has succeeded by 06:00
    clock.set(at(0, 2, 30))
    client.post("/api/v1/events", json=run("finance/daily_close", "d0", at(0, 2, 0), at(0, 2, 30)))
    clock.set(at(1, 2, 0))
    client.post("/api/v1/events", json=run("finance/daily_close", "d1", at(1, 2, 0)))   # starts on time …
    advance_to(pm, clock, at(1, 3, 0))
    clock.set(at(1, 3, 1))
    client.post("/api/v1/events", json=run("finance/daily_close", "d1", at(1, 2, 0), at(1, 3, 1)))  # … done
    advance_to(pm, clock, at(1, 6, 0, 1))
    p = state(client, "finance/daily_close")
    assert p["state"] == "healthy" and p["metrics"]["sla_compliance_30d"] == 1.0
    # day 2: nothing by 06:00 → late first, then the SLA is missed too
    advance_to(pm, clock, at(2, 6, 0, 1))
    p = state(client, "finance/daily_close")
    assert p["state"] == "late"
    assert any(c["kind"] == "sla_miss" for c in p["conditions"]), p["conditions"]
    assert p["metrics"]["sla_compliance_30d"] == pytest.approx(2 / 3)  # days 0 and 1 met, day 2 missed
    clock.set(at(2, 7, 0))
    client.post("/api/v1/events", json=run("finance/daily_close", "d2", at(2, 6, 30), at(2, 7, 0)))
    assert state(client, "finance/daily_close")["state"] == "healthy"


def test_metrics_are_kept_current(pm, client, clock):
    for d in range(5):
        clock.set(at(d, 2, 20))
        client.post("/api/v1/events", json=run("finance/daily_close", f"d{d}", at(d, 2, 0), at(d, 2, 10 + d),
                                               rows=1000 * (d + 1)))
    clock.set(at(4, 3, 0))
    client.post("/api/v1/events", json=run("finance/daily_close", "d4b", at(4, 2, 30), at(4, 2, 31), status="FAIL"))
    clock.set(at(4, 4, 0))
    client.post("/api/v1/events", json=run("finance/daily_close", "d4c", at(4, 3, 0), at(4, 3, 30), rows=10))
    m = state(client, "finance/daily_close")["metrics"]
    assert m["runs_total"] == 7
    assert m["success_rate_last_20"] == pytest.approx(6 / 7)
    assert m["success_rate_24h"] == pytest.approx(2 / 3)
    assert m["duration_last_s"] == 1800 and m["duration_p50_s"] == 720
    assert (m["rows_last"], m["rows_typical"]) == (10, 2000)  # the lower median of the last successes
    assert m["mttr_30d_s"] == pytest.approx(59 * 60)  # failed at 02:31, recovered at 03:30
    # one failure; watched since start-up (declared in the config) at day 0 00:00, failing for 59 minutes
    assert m["mtbf_30d_s"] == pytest.approx(at(4, 4) - at(0, 0) - 59 * 60)
    assert m["last_success_at"] == "2026-11-06T03:30:00Z"


def test_summary_team_health_and_filters(pm, client, clock):
    clock.set(at(0, 2, 30))
    client.post("/api/v1/events", json=run("finance/daily_close", "d0", at(0, 2, 0), at(0, 2, 30), status="FAIL"))
    client.post("/api/v1/events", json=[{"pipeline": "mkt/a", "run_id": "1", "type": "COMPLETE", "duration_s": 5,
                                         "team": "marketing"},
                                        {"pipeline": "mkt/b", "run_id": "1", "type": "START", "team": "marketing"}])
    s = client.get("/api/v1/summary").json()
    assert s["pipelines"] == 3 and s["by_state"]["failing"] == 1 and s["by_state"]["healthy"] == 1
    assert s["teams"]["marketing"]["by_state"]["unknown"] == 1 and s["teams"]["finance"]["pipelines"] == 1
    t = client.get("/api/v1/teams/finance/health").json()
    assert [p["id"] for p in t["unhealthy"]] == ["finance/daily_close"]
    assert client.get("/api/v1/teams/nobody/health").status_code == 404
    ids = [p["id"] for p in client.get("/api/v1/pipelines?state=failing,late").json()["items"]]
    assert ids == ["finance/daily_close"]
    ids = [p["id"] for p in client.get("/api/v1/pipelines?team=marketing&q=a").json()["items"]]
    assert ids == ["mkt/a"]
    assert client.get("/api/v1/pipelines?state=broken").status_code == 400


def test_a_pipeline_with_no_config_learns_an_hourly_cadence_and_turns_late_when_a_run_is_missed(pm, client, clock):
    # ten days of hourly runs at about :05 past the hour (a little jitter), no configuration at all
    for h in range(10 * 24):
        start = at(0, 0) + h * 3600 + 300 + (h * 37) % 90
        clock.set(start + 240)
        client.post("/api/v1/events", json=run("learn/hourly", f"h{h}", start, start + 240, rows=1000))
    pm.writer.tick()
    p = state(client, "learn/hourly")
    assert p["state"] == "healthy", p
    assert p["schedule"]["source"] == "learned" and "hour" in p["schedule"]["description"]
    last_start = at(0, 0) + (10 * 24 - 1) * 3600 + 300
    # the next run (due at about :05) does not come; a little after its deadline the clock says late
    advance_to(pm, clock, last_start + 3600 + 60)
    p = state(client, "learn/hourly")
    assert p["state"] == "healthy", (p["reason"], p["conditions"])
    for minutes in range(2, 40):
        advance_to(pm, clock, last_start + 3600 + minutes * 60)
        if state(client, "learn/hourly")["state"] == "late":
            break
    p = state(client, "learn/hourly")
    assert p["state"] == "late", p
    late_at = clock.now()
    assert late_at - (last_start + 3600) < 0.5 * 3600  # found within half an interval of the missed slot
    # the run arrives: healthy again
    clock.set(late_at + 240)
    client.post("/api/v1/events", json=run("learn/hourly", "late", late_at, late_at + 240, rows=1000))
    p = state(client, "learn/hourly")
    assert p["state"] == "healthy", (p["reason"], p["conditions"])


def test_nominal_times_set_the_schedule_when_none_is_declared(pm, client, clock):
    # Airflow-style: the run for the interval starting at day d 02:00 (its nominalTime) starts when the
    # interval ends, at d+1 02:00, plus a queueing delay of up to 40 minutes. No configuration at all.
    for d in range(20):
        nominal = at(d, 2)
        start = nominal + 86400 + 60 * ((d * 17) % 40 + 1)
        clock.set(start + 600)
        client.post("/api/v1/events", json=run("airflow/daily_sales", f"d{d}", start, start + 600, rows=500,
                                               nominal=nominal))
    pm.writer.tick()
    p = state(client, "airflow/daily_sales")
    assert p["state"] == "healthy", p
    # the scheduler's own grid, exactly: not "about" the jittered start times
    assert p["schedule"]["source"] == "nominal", p["schedule"]
    assert p["schedule"]["description"] == "daily at 02:00 UTC", p["schedule"]
    assert p["schedule"]["next_expected"] == "2026-11-23T02:00:00Z" == iso(at(21, 2))
    # the next run does not come: late after its deadline, and a run for it makes the pipeline healthy again
    deadline = unix(p["schedule"]["deadline"])
    advance_to(pm, clock, deadline - 60)
    assert state(client, "airflow/daily_sales")["state"] == "healthy"
    advance_to(pm, clock, deadline + 60)
    assert state(client, "airflow/daily_sales")["state"] == "late"
    start = clock.now() + 60
    clock.set(start + 600)
    client.post("/api/v1/events", json=run("airflow/daily_sales", "d20", start, start + 600, rows=500,
                                           nominal=at(20, 2)))
    p = state(client, "airflow/daily_sales")
    assert p["state"] == "healthy", (p["reason"], p["conditions"])


def test_a_declared_schedule_wins_over_nominal_times(pm, client, clock):
    # finance/daily_close is declared "0 2 * * *"; its runs say they are for 00:30
    for d in range(10):
        start = at(d, 2, 5)
        clock.set(start + 60)
        client.post("/api/v1/events", json=run("finance/daily_close", f"d{d}", start, start + 60,
                                               nominal=at(d, 0, 30)))
    p = state(client, "finance/daily_close")
    assert p["schedule"]["source"] == "declared", p["schedule"]
    assert p["schedule"]["description"] == "daily at 02:00 UTC"
