"""The outbox claim (store.alerting.claim), on SQLite and PostgreSQL: what a dispatcher may take, for how
long, and that concurrent dispatchers never take the same row nor a group's rows out of order."""
from __future__ import annotations

import sqlalchemy as sa

from pipemon.model import DeliveryStatus
from pipemon.store import alerting as store
from pipemon.store import db
from pipemon.store.schema import notifications

T = 1_790_000_000.0


def outbox(url: str, rows: list[tuple[str, str, float]]) -> sa.Engine:
    """A migrated store holding pending notifications (receiver, group, next attempt), ids 1, 2, …"""
    engine = db.open_engine(url)
    db.upgrade(engine)
    with engine.begin() as c:
        for i, (receiver, group, due) in enumerate(rows, 1):
            store.insert_notification(c, key=f"k{i}", receiver=receiver, action="trigger", group_key=group,
                                      teams=[], fingerprints=[], body="{}", now=T)
            c.execute(sa.update(notifications).where(notifications.c.id == i).values(next_attempt_at=due))
    return engine


def claim(engine: sa.Engine, me: str, now: float = T, ordered: bool = True, limit: int = 100) -> list[int]:
    with engine.begin() as c:
        return [r.id for r in store.claim(c, me, now, now + 100, limit=limit, ordered=ordered)]


def test_of_each_group_only_its_earliest_pending_row_is_claimable(db_url):
    e = outbox(db_url, [("hook", "g1", T), ("hook", "g1", T), ("hook", "g2", T + 60), ("hook", "g2", T),
                        ("pd", "g1", T), ("hook", "g3", T)])
    try:
        # 2 waits for 1 (same group); 3 is not due and holds 4 back; pd's g1 is another receiver's group
        assert claim(e, "a") == [1, 5, 6]
        assert claim(e, "b") == []  # claimed rows stay pending: their groups stay held back
        with e.begin() as c:
            store.mark_sent(c, 1, 1, T)
        assert claim(e, "b") == [2]
        assert claim(e, "b", now=T + 60) == [3]  # due now; 4 still waits for it
    finally:
        e.dispose()


def test_an_expired_lease_makes_the_row_claimable_again_and_renewal_keeps_it(db_url):
    e = outbox(db_url, [("hook", "g1", T), ("hook", "g2", T)])
    try:
        assert claim(e, "dead") == [1, 2]
        with e.begin() as c:
            assert store.renew_claims(c, "dead", T + 40) == {1, 2}
            c.execute(sa.update(notifications).where(notifications.c.id == 2).values(claimed_until=T + 10))
        assert claim(e, "b", now=T + 20) == [2]  # 1's lease was renewed, 2's ran out
        with e.begin() as c:
            assert store.renew_claims(c, "dead", T + 60) == {1}  # 2 is b's now
            store.mark_failed(c, 1, 1, DeliveryStatus.PENDING, "HTTP 503", T + 5)  # a retry keeps its claim
            assert c.execute(sa.select(notifications.c.claimed_by).where(notifications.c.id == 1)).scalar() \
                == "dead"
            assert store.release_claims(c, "b") == 1
        assert claim(e, "c", now=T + 30) == [2]
    finally:
        e.dispose()


def test_a_final_record_clears_the_claim(db_url):
    e = outbox(db_url, [("hook", "g1", T), ("hook", "g2", T)])
    try:
        claim(e, "a")
        with e.begin() as c:
            store.mark_sent(c, 1, 1, T)
            store.mark_failed(c, 2, 1, DeliveryStatus.FAILED, "HTTP 400", T)
            rows = c.execute(sa.select(notifications.c.status, notifications.c.claimed_by,
                                       notifications.c.claimed_until).order_by(notifications.c.id)).all()
        assert [tuple(r) for r in rows] == [("sent", None, None), ("failed", None, None)]
    finally:
        e.dispose()


def test_the_one_deliverer_of_a_store_claims_every_pending_row_once(db_url):
    e = outbox(db_url, [("hook", "g1", T), ("hook", "g1", T + 600), ("hook", "g2", T)])
    try:
        assert claim(e, "solo", ordered=False) == [1, 2, 3]  # due or not, whatever the group
        assert claim(e, "solo", ordered=False) == []        # not twice
        with e.begin() as c:
            assert store.release_claims(c) == 3             # a restart gives back a dead process's claims
        assert claim(e, "solo2", ordered=False) == [1, 2, 3]
    finally:
        e.dispose()


def test_concurrent_claims_skip_each_others_rows(db_url):
    """Two transactions claiming at once: the second skips what the first holds locked (PostgreSQL: SKIP
    LOCKED; SQLite serialises writers, so the second sees the first's claims)."""
    e = outbox(db_url, [("hook", f"g{i}", T) for i in range(10)])
    try:
        if e.dialect.name == "postgresql":
            with e.connect() as c1, e.connect() as c2:
                # c1 claims and does not commit yet: its rows stay locked
                first = [r.id for r in store.claim(c1, "a", T, T + 15, limit=4, ordered=True)]
                second = [r.id for r in store.claim(c2, "b", T, T + 15, limit=100, ordered=True)]
                c2.commit()
                c1.commit()
        else:
            first, second = claim(e, "a", limit=4), claim(e, "b")
        assert first == [1, 2, 3, 4] and second == [5, 6, 7, 8, 9, 10]
    finally:
        e.dispose()
