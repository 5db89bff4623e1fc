"""The deliverer on an injected clock: retries, backoff, giving up and rate buckets follow a FakeClock that
the test moves, so no test sleeps for a backoff. Real parts otherwise: the writer on SQLite, the outbox
claim through it, HTTP to a local receiver."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import msgspec
import pytest
import sqlalchemy as sa

from pipemon.app import build
from pipemon.clock import FakeClock
from pipemon.config import loads
from pipemon.notify import build_receivers
from pipemon.notify.delivery import Deliverer
from pipemon.store import alerting as store
from pipemon.store.schema import notifications
from tests.notify.conftest import T0, LocalReceiver, alert, notification


def until(cond: Callable[[], object], what: str, limit: float = 10.0) -> None:
    """Wait for real threads (HTTP, the writer) to get somewhere; no timing is asserted."""
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def pm(tmp_path) -> Iterator:
    pm = build(f"sqlite:///{tmp_path / 'pipemon.db'}", loads(""), clock=FakeClock(T0), deliver=False)
    pm.start()
    yield pm
    if pm.deliverer is not None:
        pm.deliverer.stop()
        pm.deliverer = None
    pm.close()


def start(pm, url: str, **kw) -> Deliverer:
    receivers = build_receivers([{"name": "payments", "webhook": {"url": url + "/hook"},
                                  **kw.pop("receiver", {})}])
    d = pm.deliverer = Deliverer(pm, receivers, clock=pm.clock, **kw)
    d.start()
    return d


def put(pm, *groups: str) -> list[int]:
    """Pending notifications, one per group, written by the writer as the alerting does."""
    ids = []
    for g in groups:
        n = notification(group_key=g, key=f"key-{g}", alerts=(alert(fingerprint=f"fp-{g}"),))
        body = msgspec.json.encode(n).decode()
        ids.append(pm.writer.call(lambda c, now, n=n, body=body: store.insert_notification(
            c, key=n.key, receiver=n.receiver, action=n.action.value, group_key=n.group_key,
            teams=["payments"],
            fingerprints=[f"fp-{n.group_key}"], body=body, now=now)))
    return ids


def row(pm, nid: int) -> sa.Row:
    with pm.db.connect() as c:
        return c.execute(sa.select(notifications).where(notifications.c.id == nid)).one()


def test_a_transient_failure_is_retried_when_the_clock_reaches_its_backoff(pm, http_receiver: LocalReceiver):
    http_receiver.replies = [(503, {}, b"down")]
    (nid,) = put(pm, "g1")
    d = start(pm, http_receiver.url, backoff_base=60.0, backoff_cap=600.0)
    until(lambda: row(pm, nid).attempts == 1, "the failed attempt to be recorded")
    r = row(pm, nid)
    assert r.status == "pending" and "503" in r.last_error
    assert T0 + 30 <= r.next_attempt_at <= T0 + 60  # base 60 s, jittered down to half
    assert len(http_receiver.requests) == 1  # the clock stands still: the retry is not due, however long

    pm.clock.set(r.next_attempt_at)
    d.kick()
    until(lambda: row(pm, nid).status == "sent", "the retry")
    keys = [q.headers["idempotency-key"] for q in http_receiver.requests]
    assert len(keys) == 2 and len(set(keys)) == 1  # the same notification to the receiver
    assert row(pm, nid).attempts == 2 and d.counts["payments"] == {"sent": 1, "retried": 1, "failed": 0,
                                                                  "skipped": 0}


def test_transient_failures_end_dead_once_the_clock_passes_max_age(pm, http_receiver: LocalReceiver):
    http_receiver.replies = [(503, {}, b"down")] * 3
    (nid,) = put(pm, "g1")
    d = start(pm, http_receiver.url, backoff_base=10.0, backoff_cap=10.0, max_age=25.0)
    for attempt in (1, 2):
        until(lambda attempt=attempt: row(pm, nid).attempts == attempt, f"attempt {attempt} recorded")
        pm.clock.set(row(pm, nid).next_attempt_at)
        d.kick()
    until(lambda: row(pm, nid).attempts == 3, "attempt 3 recorded")
    r = row(pm, nid)
    # the clock moved at most 2 × 10 s: under max_age, so still pending
    assert r.status == "pending"
    pm.clock.set(T0 + 30)
    http_receiver.replies = [(503, {}, b"down")]
    d.kick()
    until(lambda: row(pm, nid).status != "pending", "the give-up")
    r = row(pm, nid)
    assert r.status == "dead" and r.attempts == 4 and r.last_error.startswith("gave up after 4 attempts")


def test_the_rate_bucket_refills_with_the_clock(pm, http_receiver: LocalReceiver):
    ids = put(pm, "g1", "g2", "g3")
    start(pm, http_receiver.url, receiver={"rate_limit": {"per_second": 1, "burst": 2}})
    until(lambda: len(http_receiver.requests) == 2, "the burst")
    until(lambda: row(pm, ids[1]).status == "sent", "the burst recorded")
    assert row(pm, ids[2]).status == "pending"  # no token: the clock has not moved
    pm.clock.advance(1.0)                       # one token
    until(lambda: row(pm, ids[2]).status == "sent", "the third, on the refilled token")
    assert [q.headers["idempotency-key"] for q in http_receiver.requests] == ["key-g1", "key-g2", "key-g3"]


def test_claims_left_by_a_dead_process_are_given_back_at_start(pm, http_receiver: LocalReceiver):
    ids = put(pm, "g1", "g2")
    with pm.db.begin() as c:  # as a process killed mid-send leaves them: claimed, lease far ahead
        c.execute(sa.update(notifications).values(claimed_by="dead-process", claimed_until=T0 + 3600))
    start(pm, http_receiver.url)
    until(lambda: all(row(pm, i).status == "sent" for i in ids), "both sent")
    assert {row(pm, i).claimed_by for i in ids} == {None}
