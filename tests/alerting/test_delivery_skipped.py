"""Skipped is not delivered: a resolve that the receiver's only channel filters out (send_resolved: false) is
recorded as `skipped`, and falling between failures it neither resolves receiver_failing (no flap) nor
counts as a failure; the next real delivery does resolve it."""
from __future__ import annotations

import time

import pytest

from tests.alerting.delivery_helpers import FlakyReceiver, Served

pytestmark = pytest.mark.slow


def config(team: str, default: str) -> str:
    return f"""
pipelines:
  - match: "pay/*"
    team: pay
receivers:
  - name: default
    webhook: {{url: "{default}/default"}}
  - name: team
    webhook: {{url: "{team}/hook", send_resolved: false}}
route:
  receiver: default
  group_by: [pipeline]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
  routes:
    - matchers: ['team="pay"']
      receiver: team
"""


def own(rec: FlakyReceiver) -> list[str]:
    """The actions of receiver_failing notifications about receiver `team`."""
    return [r["body"]["pipemon"]["action"] for r in rec.on("/default")
            if r["body"]["alerts"][0]["labels"].get("receiver") == "team"]


def wait(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_a_filtered_resolve_between_failures_does_not_flap_receiver_failing(db_url):
    team, default = FlakyReceiver("ok"), FlakyReceiver("ok")
    s = Served(db_url, config(team.url, default.url), threshold=2, backoff_base=0.2, backoff_cap=0.5)
    d = s.pm.deliverer

    def status(pipeline: str, action: str) -> str | None:
        got = [n["status"] for n in s.outbox("team")
               if n["alerts"][0]["pipeline"] == pipeline and n["action"] == action]
        return got[0] if got else None

    def own_alert() -> list[str]:
        return [a["state"] for a in s.http.get("/api/v1/alerts", params={
            "state": "firing,acknowledged,resolved", "kind": "receiver_failing"}).json()["items"]]

    try:
        s.run("pay/a", "r1", ok=False)
        assert team.wait_for(lambda r: len(r.on("/hook")) == 1)   # a's trigger delivered
        team.mode = "down"
        s.run("pay/b", "r1", ok=False)                            # b's trigger keeps failing
        assert default.wait_for(lambda r: own(r) == ["trigger"])  # receiver_failing raised
        streak = d.failing_streak("team")
        s.run("pay/a", "r2", ok=True)                             # a's resolve: filtered out
        wait(lambda: status("pay/a", "resolve") == "skipped")
        assert status("pay/b", "trigger") == "pending"
        assert d.failing_streak("team") >= streak                 # not reset by the skip
        assert own_alert() == ["firing"]
        assert default.wait_for(lambda r: own(r) != ["trigger"], timeout=2.0) is False  # no resolve: no flap
        team.mode = "ok"                                          # a real delivery resolves it
        assert default.wait_for(lambda r: own(r) == ["trigger", "resolve"])
        wait(lambda: status("pay/b", "trigger") == "sent")
        counts = dict(d.counts["team"])
        box = s.outbox("team")
    finally:
        s.close()
        team.close()
        default.close()
    assert [r["body"]["pipemon"]["action"] for r in team.on("/hook")] == ["trigger", "trigger"]
    assert counts["skipped"] == 1 and counts["sent"] == 2 and counts["retried"] >= 2
    assert sorted(n["status"] for n in box) == ["sent", "sent", "skipped"]
