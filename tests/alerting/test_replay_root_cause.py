"""Replay tests for issue 10: one page per root cause (item 5), lateness from history (item 6).

Both drive the real replay (`pipemon.replay.replay`: the same writer, engine and alerting as live, with time
following the events) and count what the replay output says would have been sent.
"""
from __future__ import annotations

import io
import json
from datetime import datetime, timezone

from pipemon.config import loads
from pipemon.replay import PAGING, SENDS, replay

T0 = datetime(2026, 11, 2, tzinfo=timezone.utc).timestamp()  # a Monday
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
