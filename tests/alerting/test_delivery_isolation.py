"""Issue 10's delivery scenario end to end: the app under a real uvicorn in a thread, a real database, events
over HTTP, two local HTTP receivers. Receiver `bad` answers 503, then stalls past the HTTP timeout, then
works; receiver `good` works throughout.

Scaled down from the issue's "503 for 2 minutes, then timeouts for 1 minute" through the deliverer's
constructor (retry backoff 0.2 s doubling to a cap of 1 s instead of 2 s to 60 s) and the webhook's own
`timeout: 1s` (the receiver stalls 1.5 s): the behaviour is the same, each phase just sees fewer retries.
The phases end when the test has seen what it waits for, not after a time.
"""
from __future__ import annotations

import collections
import time

import pytest

from tests.alerting.delivery_helpers import FlakyReceiver, Served

pytestmark = pytest.mark.slow


def config(bad: str, good: str) -> str:
    return f"""
pipelines:
  - match: "pay/*"
    team: pay
receivers:
  - name: default
    webhook: {{url: "{good}/default"}}
  - name: bad
    webhook: {{url: "{bad}/hook", timeout: 1s}}
  - name: good
    webhook: {{url: "{good}/hook"}}
route:
  receiver: default
  group_by: [pipeline]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
  routes:
    - matchers: ['team="pay"']
      receiver: bad
      continue: true
    - matchers: ['team="pay"']
      receiver: good
"""


def actions(rec: FlakyReceiver, path: str = "/hook") -> list[tuple[str, str]]:
    return [(r["body"]["alerts"][0]["labels"]["pipeline"], r["body"]["pipemon"]["action"]) for r in rec.on(path)]


def count(rec: FlakyReceiver, action: str) -> int:
    return sum(1 for _, a in actions(rec) if a == action)


def test_a_failing_then_stalling_receiver_gets_everything_once_in_order_and_never_delays_the_other(db_url):
    bad, good = FlakyReceiver("down", stall=1.5), FlakyReceiver("ok")
    s = Served(db_url, config(bad.url, good.url))
    try:
        # phase 1: `bad` answers 503. Three pipelines fail, then recover: a trigger and a resolve each.
        for p in ("pay/a", "pay/b", "pay/c"):
            s.run(p, "r1", ok=False)
        assert good.wait_for(lambda g: count(g, "trigger") == 3)
        for p in ("pay/a", "pay/b", "pay/c"):
            s.run(p, "r2", ok=True)
        assert good.wait_for(lambda g: count(g, "resolve") == 3)
        # `good` got all six while `bad`, tried meanwhile, had taken none
        assert bad.wait_for(lambda b: b.refused >= 3)
        assert bad.received == []
        # `bad` keeps failing: pipemon's own alert goes out (to `good`'s default path)
        assert good.wait_for(lambda g: any(a == ("pipemon/receiver:bad", "trigger") for a in actions(g, "/default")))

        # phase 2: `bad` stalls past the 1 s HTTP timeout. Two more failures, one of them recovering.
        bad.mode = "stall"
        s.run("pay/d", "r1", ok=False)
        s.run("pay/e", "r1", ok=False)
        assert good.wait_for(lambda g: count(g, "trigger") == 5)
        s.run("pay/d", "r2", ok=True)
        assert good.wait_for(lambda g: count(g, "resolve") == 4)
        refused = bad.refused
        assert bad.wait_for(lambda b: b.refused > refused)  # timed-out attempts reached it
        assert bad.received == []

        # phase 3: `bad` works again and gets everything that waited
        bad.mode = "ok"
        assert bad.wait_for(lambda b: count(b, "trigger") == 5 and count(b, "resolve") == 4, timeout=30)
        assert good.wait_for(lambda g: any(a == ("pipemon/receiver:bad", "resolve") for a in actions(g, "/default")))
        deadline = time.monotonic() + 10
        while any(n["status"] == "pending" for n in s.outbox("bad")) and time.monotonic() < deadline:
            time.sleep(0.1)
        box = s.outbox("bad")
    finally:
        s.close()
        bad.close()
        good.close()

    # exactly once per idempotency key, and every notification of the outbox arrived
    keys = [r["headers"]["Idempotency-Key"] for r in bad.on("/hook")]
    assert len(keys) == len(set(keys)) == len(box) == 9
    assert {n["status"] for n in box} == {"sent"}
    assert sorted(actions(bad)) == sorted(actions(good))
    # never a resolve before its trigger
    per_pipeline = collections.defaultdict(list)
    for pipeline, action in actions(bad):
        per_pipeline[pipeline].append(action)
    assert dict(per_pipeline) == {"pay/a": ["trigger", "resolve"], "pay/b": ["trigger", "resolve"],
                                  "pay/c": ["trigger", "resolve"], "pay/d": ["trigger", "resolve"],
                                  "pay/e": ["trigger"]}
