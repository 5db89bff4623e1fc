"""The deliverer survives a store that refuses it: while the outbox table is away (renamed by the test, on a
real SQLite or PostgreSQL), the outbox polls fail and the results of deliveries in flight cannot be recorded.
The deliverer thread stays alive, sends nothing twice, and once the table is back records every result
exactly once.

(The writer's own recovery from a lost connection is tested with the writer; this fault reaches exactly
the deliverer's two store paths, its polls and its result records, and leaves the writer running.)
"""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from tests.alerting.delivery_helpers import ONE_HOOK_CONFIG as CONFIG
from tests.alerting.delivery_helpers import FlakyReceiver, Served

pytestmark = pytest.mark.slow



def test_polls_and_result_records_outlive_a_store_that_is_away(db_url):
    rec = FlakyReceiver("ok")
    rec.delay = 0.5  # each delivery is in flight for a while: the table goes away under it
    s = Served(db_url, CONFIG.format(url=rec.url), store_backoff_base=0.1, store_backoff_cap=0.5)
    d = s.pm.deliverer
    admin = sa.create_engine(db_url)
    try:
        for p in ("pay/a", "pay/b", "pay/c"):
            s.run(p, "r1", ok=False)  # acknowledged: three triggers are in the outbox
        with admin.begin() as c:
            c.exec_driver_sql("ALTER TABLE notifications RENAME TO notifications_away")
        try:
            assert rec.wait_for(lambda r: len(r.on("/hook")) == 3)  # delivered, not recordable
            assert rec.wait_for(lambda r: False, timeout=2.0) is False  # polls and records keep failing
            assert d.alive()
            assert d._inflight  # results held until the store takes them
        finally:
            with admin.begin() as c:
                c.exec_driver_sql("ALTER TABLE notifications_away RENAME TO notifications")
        deadline = time.monotonic() + 20
        while (d._inflight or any(n["status"] != "sent" for n in s.outbox("hook"))) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        box = s.outbox("hook")
        assert d.alive()
        counts = dict(d.counts["hook"])
    finally:
        admin.dispose()
        s.close()
        rec.close()
    assert [n["status"] for n in box] == ["sent"] * 3 and [n["attempts"] for n in box] == [1] * 3
    keys = [r["headers"]["Idempotency-Key"] for r in rec.on("/hook")]
    assert len(keys) == len(set(keys)) == 3  # nothing was resent while its result waited
    assert counts == {"sent": 3, "retried": 0, "failed": 0, "skipped": 0}
