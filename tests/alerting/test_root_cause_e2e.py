"""One page per root cause through the real service (issue 10, item 5): fake clock, the real writer and
deliverer, real HTTP to a local receiver. The burst that joins the open failure is visible on the alert (API)
and in the next notification's detail."""
from __future__ import annotations

from tests.alerting.harness import Harness, at

CONFIG = """
pipelines:
  - {{match: "pay/*", team: payments, tier: 1, schedule: "0 * * * *", grace: 10m}}
receivers:
  - name: payments
    webhook: {{url: "{url}/pay"}}
route:
  receiver: payments
  group_by: [team, pipeline]
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 4h
"""


def test_the_failure_burst_is_evidence_on_the_paged_failure_and_in_its_next_notification(db_url, receiver):
    hs = Harness(db_url, CONFIG.format(url=receiver.url), at(0, 0))
    try:
        history = []
        for i in range(72):  # three days of good hourly runs, sent at once
            s = at(0, 0) + i * 3600 + 60
            history += [{"pipeline": "pay/ledger", "run_id": f"ok{i}", "type": "START", "event_time": s},
                        {"pipeline": "pay/ledger", "run_id": f"ok{i}", "type": "COMPLETE", "event_time": s + 240}]
        hs.clock.set(at(0, 0, day=3))
        hs.post(history)
        for i in range(3):  # three failures in a row: the second one makes a failure-rate burst
            hs.run("pay/ledger", f"bad{i}", at(i, 1, day=3), at(i, 5, day=3), ok=False)
            hs.advance(at(i, 30, day=3))
        hs.settle()
        assert receiver.actions("/pay") == ["trigger"]
        [alert] = hs.alerts(pipeline="pay/ledger")
        assert alert["kind"] == "failure" and alert["occurrences"] == 3 and alert["state"] == "firing"
        [ev] = alert["evidence"]
        assert ev["kind"] == "failure_rate" and ev["why"] == "a burst of the same failures" and ev["count"] == 1
        assert "failed runs in a row" in ev["text"] and ev["cleared_at"] is None
        hs.run("pay/ledger", "fixed", at(3, 1, day=3), at(3, 5, day=3))  # recovery resolves the failure and its burst
        hs.advance(at(3, 30, day=3))
        hs.settle()
        assert receiver.actions("/pay") == ["trigger", "resolve"]
        detail = receiver.on("/pay")[1]["body"]["alerts"][0]["annotations"]["description"]
        assert "Also explained by this failure:" in detail and "- failure_rate (a burst of the same failures" in detail
        [alert] = hs.alerts(pipeline="pay/ledger")
        assert alert["state"] == "resolved" and alert["evidence"][0]["cleared_at"] is not None
    finally:
        hs.close()
