"""Several dispatchers share one outbox on the real PostgreSQL, sending to a real local HTTP receiver.

- Three dispatchers (shared Deliverers, each with its own connection pool and HTTP client) and 3,000
  notifications in 300 groups: each is delivered exactly once, each group in creation order, and the
  dispatchers shared the work.
- `pipemon serve --role dispatcher` SIGKILLed while a request is in flight: another dispatcher sends what
  the dead one had claimed once its lease expires; the in-flight one arrives twice, under the same
  Idempotency-Key, and still before the next notification of its group.
"""
from __future__ import annotations

import time
from collections import defaultdict
from types import SimpleNamespace

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from pipemon.clock import FakeClock, WallClock
from pipemon.cluster.dispatcher import new_deliverer
from pipemon.config import loads
from pipemon.model import Notification, NotifyAction
from pipemon.store import db
from pipemon.store.schema import notifications
from tests.alerting.receiver import Receiver
from tests.cluster.conftest import Cluster, count, ready, wait_until
from tests.notify.conftest import alert

pytestmark = pytest.mark.slow

CONFIG = """
receivers:
  - name: hook
    rate_limit: {{per_second: 5000, burst: 5000}}
    webhook: {{url: "{url}/hook"}}
route:
  receiver: hook
"""


def seed(url: str, groups: int, per_group: int) -> dict[str, list[str]]:
    """Pending notifications to receiver hook, interleaved across groups (ids in creation order); each
    group's keys in creation order."""
    engine = db.open_engine(url)
    db.upgrade(engine)
    order: dict[str, list[str]] = defaultdict(list)
    now = time.time()
    rows = []
    for i in range(per_group):
        for g in range(groups):
            key = f"g{g}-n{i}"
            action = NotifyAction.TRIGGER if i == 0 else NotifyAction.REPEAT
            n = Notification(id=0, receiver="hook", action=action, group_key=f"g{g}",
                             group_labels={"g": str(g)}, alerts=(alert(fingerprint=f"fp{g}"),), time=now,
                             key=key)
            rows.append({"key": key, "receiver": "hook", "action": n.action.value, "group_key": n.group_key,
                         "teams": '["payments"]', "fingerprints": f'["fp{g}"]',
                         "body": msgspec.json.encode(n).decode(), "status": "pending", "attempts": 0,
                         "next_attempt_at": now, "created_at": now})
            order[f"g{g}"].append(key)
    with engine.begin() as c:
        c.execute(sa.insert(notifications), rows)
    engine.dispose()
    return order


def arrivals(rec: Receiver) -> list[tuple[str, str]]:
    """(idempotency key, dispatcher header) of every request, in arrival order."""
    return [(r["headers"]["Idempotency-Key"], r["headers"].get("X-Dispatcher", ""))
            for r in rec.on("/hook")]


def assert_group_order(keys: list[str], order: dict[str, list[str]]) -> None:
    firsts: dict[str, list[str]] = defaultdict(list)
    for k in dict.fromkeys(keys):  # first arrivals, in order
        firsts[k.split("-")[0]].append(k)
    for g, expected in order.items():
        assert firsts[g] == expected, f"group {g} out of order: {firsts[g]}"


def test_three_dispatchers_deliver_each_notification_once_in_order(owned_db):
    _, _, url = owned_db
    rec = Receiver()
    order = seed(url, groups=300, per_group=10)
    settings = loads(CONFIG.format(url=rec.url))
    deliverers = []
    try:
        for i in range(3):
            pm = SimpleNamespace(db=db.open_engine(url), clock=WallClock(), settings=settings)
            d = new_deliverer(pm, http=httpx.Client(headers={"X-Dispatcher": str(i)}, timeout=10))
            d.start()
            deliverers.append(d)
        for d in deliverers:
            d.poll_soon()  # as a worker's wake-up does
        wait_until(lambda: count(url, "SELECT count(*) FROM notifications WHERE status = 'pending'") == 0,
                   "the outbox to drain", 300, every=1)
    finally:
        for d in deliverers:
            d.stop()
            d.pm.db.dispose()
        rec.server.shutdown()
    got = arrivals(rec)
    keys = [k for k, _ in got]
    assert len(keys) == 3000 and set(keys) == {k for ks in order.values() for k in ks}  # each exactly once
    assert_group_order(keys, order)
    by = {who for _, who in got}
    assert len(by) >= 2, f"one dispatcher sent everything: {by}"
    sent = "SELECT count(*) FROM notifications WHERE status = 'sent' AND claimed_by IS NULL"
    assert count(url, sent) == 3000


def test_a_dispatcher_killed_mid_send_leaves_its_claims_to_another(owned_db, prefix, tmp_path):
    _, _, url = owned_db
    rec = Receiver()
    rec.delay = 3.0  # the answer comes late: the kill lands while the request is in flight
    order = seed(url, groups=15, per_group=2)
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(CONFIG.format(url=rec.url))
    cluster = Cluster(url, tmp_path, prefix, str(cfg))
    try:
        first = cluster.start("dispatcher")
        rec.wait("/hook", 1, timeout=30)
        pid = first.proc.pid if first.proc else 0
        held = count(url, f"SELECT count(*) FROM notifications WHERE status = 'pending' "
                          f"AND claimed_by LIKE '{pid}-%'")
        first.kill()
        in_flight = [k for k, _ in arrivals(rec)]
        assert len(in_flight) == 1 and held >= 1  # one lane per receiver: one request at a time
        rec.delay = 0.0
        second = cluster.start("dispatcher")
        wait_until(lambda: ready(second).get("components", {}).get("dispatcher", "").startswith("active"),
                   "the second dispatcher", 30)
        wait_until(lambda: count(url, "SELECT count(*) FROM notifications WHERE status = 'pending'") == 0,
                   "the outbox to drain after the lease", 90, every=0.5)
    finally:
        cluster.stop()
        rec.server.shutdown()
    keys = [k for k, _ in arrivals(rec)]
    assert set(keys) == {k for ks in order.values() for k in ks}
    resent = sorted({k for k in keys if keys.count(k) > 1})
    assert resent == in_flight  # only the one in flight at the kill, with the same Idempotency-Key
    assert_group_order(keys, order)
    g = in_flight[0].split("-")[0]
    mine = [k for k in keys if k.startswith(g + "-")]
    assert mine == [order[g][0], order[g][0], order[g][1]]  # its group's next waited for the resend


def test_a_row_claimed_by_another_after_the_lease_leaves_the_lanes(owned_db):
    """A dispatcher that could not renew (its store away longer than the lease) finds at its next renewal
    that another dispatcher has claimed a row it still holds for a retry: it drops it, never sends it
    again."""
    _, _, url = owned_db
    rec = Receiver()
    rec.failing.add("/hook")  # 503: the row waits in the lane for its retry, claimed
    seed(url, groups=1, per_group=1)
    clock = FakeClock(time.time())
    pm = SimpleNamespace(db=db.open_engine(url), clock=clock, settings=loads(CONFIG.format(url=rec.url)))
    d = new_deliverer(pm, clock=clock, backoff_base=600.0, backoff_cap=600.0)
    d.start()
    try:
        d.poll_soon()
        wait_until(lambda: d.counts["hook"]["retried"] == 1, "the failed first attempt", 30, every=0.05)
        assert d._held(with_done=False) == {1}
        with pm.db.begin() as c:  # as after an expired lease: another dispatcher's now
            c.execute(sa.update(notifications).values(claimed_by="other", claimed_until=clock.now() + 15))
        d._renew()
        assert d._held(with_done=False) == set()
        rec.failing.clear()
        clock.advance(3600)  # the retry would be due
        d.kick()
        time.sleep(0.5)  # and nothing comes: the row is the other dispatcher's
        assert rec.on("/hook") == []
    finally:
        d.stop()
        pm.db.dispose()
        rec.server.shutdown()
