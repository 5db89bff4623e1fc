"""Replay tests for issue 10: one page per root cause (item 5), lateness from history (item 6).

Both drive the real replay (`pipemon.replay.replay`: the same writer, engine and alerting as live, with time
following the events) and count what the replay output says would have been sent.
"""
from __future__ import annotations

import io
import json
from datetime import UTC, datetime

from pipemon.config import loads
from pipemon.replay import PAGING, SENDS, replay

T0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday
HOUR = 3600.0
DAY = 86400.0

CONFIG = """
receivers:
  - name: oncall
    webhook: {url: "http://127.0.0.1:9/never-called"}
route:
  receiver: oncall
  group_by: [team, pipeline]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 12h
pipelines:
  - match: "core/orders"
    team: core
    tier: 1
    schedule: "0 * * * *"
    grace: 15m
  - match: "core/ledger"
    team: core
    tier: 1
    schedule: "0 2 * * *"
    grace: 1h
"""


def _run(pipeline: str, run_id: str, start: float, end: float, ok: bool = True) -> list[dict]:
    done: dict = {"pipeline": pipeline, "run_id": run_id, "type": "COMPLETE" if ok else "FAIL", "event_time": end}
    if not ok:
        done["error"] = {"message": "relation orders_raw does not exist", "type": "ProgrammingError"}
    return [{"pipeline": pipeline, "run_id": run_id, "type": "START", "event_time": start}, done]


def _replay(events: list[dict], until: float) -> list[dict]:
    src = io.BytesIO("".join(json.dumps(e) + "\n" for e in events).encode())
    out = io.StringIO()
    replay(loads(CONFIG), src, out, until=until)
    return [json.loads(x) for x in out.getvalue().splitlines()]


def _pages(lines: list[dict], pipeline: str) -> list[dict]:
    """What the replay counts as a page: a trigger, repeat or escalation carrying an error or critical alert."""
    return [n for n in lines if n["action"] in SENDS and any(a["pipeline"] == pipeline and a["severity"] in PAGING
                                                              for a in n["alerts"])]


def test_a_tier1_pipeline_failing_three_times_in_a_row_pages_its_receiver_once():
    events: list[dict] = []
    t = T0
    for i in range(72):  # three days of good hours teaches the failure-rate detector this pipeline rarely fails
        events += _run("core/orders", f"ok-{i}", t + 60, t + 300)
        t += HOUR
    for i in range(3):   # then three failures in a row: a failure, and (at the third) a failure-rate burst
        events += _run("core/orders", f"bad-{i}", t + 60, t + 300, ok=False)
        t += HOUR
    lines = _replay(events, until=t - HOUR + 1800)

    kinds = {a["kind"] for n in lines for a in n["alerts"]}
    pages = _pages(lines, "core/orders")
    assert len(pages) == 1, json.dumps(lines, indent=1)
    assert pages[0]["receiver"] == "oncall" and pages[0]["action"] == "trigger"
    assert [a["kind"] for a in pages[0]["alerts"]] == ["failure"]
    assert "failure_rate" not in kinds  # the burst joined the open failure instead of opening an alert


def test_the_failure_resolves_once_with_its_burst_when_the_pipeline_succeeds_again():
    events: list[dict] = []
    t = T0
    for i in range(72):
        events += _run("core/orders", f"ok-{i}", t + 60, t + 300)
        t += HOUR
    for i in range(3):
        events += _run("core/orders", f"bad-{i}", t + 60, t + 300, ok=False)
        t += HOUR
    events += _run("core/orders", "fixed", t + 60, t + 300)
    lines = [n for n in _replay(events, until=t + 1800) if any(a["pipeline"] == "core/orders" for a in n["alerts"])]
    assert [(n["action"], [a["kind"] for a in n["alerts"]]) for n in lines] == [
        ("trigger", ["failure"]), ("resolve", ["failure"])]


def test_a_declared_pipeline_whose_history_arrives_two_days_old_goes_late_at_once():
    now = T0 + 2 * DAY + 10 * HOUR          # Wednesday 10:00; the replay starts at 08:59
    events: list[dict] = []
    for t in (now - 2 * HOUR, now - HOUR):  # another pipeline's live traffic moves the clock
        events += _run("core/orders", f"o-{t}", t + 60, t + 300)
    # then core/ledger's history is sent (an import): daily runs, the last one on Monday, two days ago. Events
    # with old event times: the replay's clock does not go back, they are learned "now", as live
    for day in (-2, -1, 0):
        s = T0 + day * DAY + 2 * HOUR + 300
        events += _run("core/ledger", f"l{day}", s, s + 600)
    lines = _replay(events, until=now + 1800)

    late = [n for n in lines if any(a["pipeline"] == "core/ledger" and a["kind"] == "late" for a in n["alerts"])]
    assert late, json.dumps(lines, indent=1)
    first = late[0]
    # at once: within a minute of the import (its group_wait is 30 s), not at Thursday's 03:00 deadline
    assert first["time"] <= "2026-11-04T09:07:00Z" and first["action"] == "trigger", first
    summary = first["alerts"][0]["summary"]
    assert "since the Tue 2026-11-03 02:00 UTC slot" in summary and "n/a" not in summary
    assert summary.startswith("core/ledger is 31h") and " late: " in summary  # as of the notification
