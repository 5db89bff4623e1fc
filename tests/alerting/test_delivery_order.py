"""After a crash with a trigger and its resolve both pending, the resolve never overtakes the trigger, even
when the resolve's retry is due first; another alert's notification is not held back meanwhile."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from pipemon.store.schema import notifications
from tests.alerting.delivery_helpers import ONE_HOOK_CONFIG as CONFIG
from tests.alerting.delivery_helpers import FlakyReceiver, Served

pytestmark = pytest.mark.slow



def test_a_resolve_left_by_a_crash_waits_for_its_trigger(db_url):
    rec = FlakyReceiver("ok")
    cfg = CONFIG.format(url=rec.url)
    # the first process decides (trigger and resolve of pay/a, a trigger of pay/b) and sends nothing
    first = Served(db_url, cfg, deliver=False)
    try:
        first.run("pay/a", "r1", ok=False)
        first.run("pay/b", "r1", ok=False)
        first.run("pay/a", "r2", ok=True)
        deadline = time.monotonic() + 15
        while len(first.outbox("hook")) < 3:
            assert time.monotonic() < deadline, first.outbox("hook")
            time.sleep(0.1)
        box = {(n["alerts"][0]["pipeline"], n["action"]): n["id"] for n in first.outbox("hook")}
    finally:
        first.close()
    assert set(box) == {("pay/a", "trigger"), ("pay/a", "resolve"), ("pay/b", "trigger")}
    # as a crash mid-retry leaves them: the trigger's next attempt later than its resolve's
    engine = sa.create_engine(db_url)
    with engine.begin() as c:
        now = time.time()
        for key, at in [(("pay/a", "trigger"), now + 2.0), (("pay/a", "resolve"), now - 60),
                        (("pay/b", "trigger"), now - 60)]:
            c.execute(sa.update(notifications).where(notifications.c.id == box[key])
                      .values(attempts=1, next_attempt_at=at, last_error="HTTP 503"))
    engine.dispose()

    again = Served(db_url, cfg)
    try:
        assert rec.wait_for(lambda r: len(r.on("/hook")) == 3)
    finally:
        again.close()
        rec.close()
    got = [(r["body"]["alerts"][0]["labels"]["pipeline"], r["body"]["pipemon"]["action"]) for r in rec.on("/hook")]
    # pay/b was due and not held back by pay/a's wait; pay/a's resolve came only after its trigger
    assert got == [("pay/b", "trigger"), ("pay/a", "trigger"), ("pay/a", "resolve")]
