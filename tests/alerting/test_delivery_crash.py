"""A SIGKILL of the service mid-delivery duplicates nothing the receiver sees as a new incident: the outbox
row outlives the process, the resend carries the same Idempotency-Key (webhook) and dedup_key (PagerDuty)."""
from __future__ import annotations

import time

import httpx

from tests.conftest import LiveServer


def test_sigkill_mid_delivery_resends_with_the_same_keys(db_url, tmp_path, receiver):
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(f"""
receivers:
  - name: hook
    webhook: {{url: "{receiver.url}/hook"}}
  - name: pd
    pagerduty: {{routing_key: "R0UTINGKEY0123456789abcdef012345", url: "{receiver.url}/pd"}}
route:
  receiver: hook
  group_wait: 0s
  routes:
    - matchers: ['kind="failure"']
      receiver: pd
      continue: true
    - matchers: ['kind="failure"']
      receiver: hook
""")
    receiver.delay = 3.0  # the receiver takes its time: the kill lands while the request is in flight
    server = LiveServer(db_url, tmp_path, str(cfg)).start()
    try:
        r = httpx.post(server.url + "/api/v1/events", json=[
            {"pipeline": "pay/invoices", "run_id": "r1", "type": "START", "event_time": time.time() - 60},
            {"pipeline": "pay/invoices", "run_id": "r1", "type": "FAIL", "event_time": time.time(),
             "error": "boom"}], timeout=10)
        assert r.status_code == 200
        receiver.wait("/hook", 1, timeout=10)
        receiver.wait("/pd", 1, timeout=10)
        server.kill()  # both requests arrived, neither got its answer back: both stay pending in the outbox
    finally:
        server.kill()
    assert len(receiver.on("/hook")) == 1 and len(receiver.on("/pd")) == 1
    receiver.delay = 0.0
    again = LiveServer(db_url, tmp_path, str(cfg)).start()
    try:
        hooks = receiver.wait("/hook", 2, timeout=15)
        pds = receiver.wait("/pd", 2, timeout=15)
        time.sleep(1.5)  # and nothing more comes
        assert len(receiver.on("/hook")) == 2 and len(receiver.on("/pd")) == 2
        # the resend is the same notification: same idempotency key, same alert fingerprint
        assert len({h["headers"]["Idempotency-Key"] for h in hooks}) == 1
        assert len({h["body"]["alerts"][0]["fingerprint"] for h in hooks}) == 1
        assert len({p["body"]["dedup_key"] for p in pds}) == 1
        assert {p["body"]["event_action"] for p in pds} == {"trigger"}
        sent = httpx.get(again.url + "/api/v1/notifications", timeout=10).json()["items"]
        assert {n["status"] for n in sent} == {"sent"} and len(sent) == 2
    finally:
        again.stop()
