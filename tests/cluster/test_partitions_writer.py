"""Two writers owning complementary partitions on one store, in process (no threads, a shared fake clock):
each evaluates only its own pipelines' deadlines, keeps its own checkpoint marks and dispatch pieces, and
refuses operator changes to the other's alerts with the partition that owns them."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from pipemon.config import loads
from pipemon.errors import Unavailable
from pipemon.engine.alerts import fingerprint
from pipemon.log import partition_of
from pipemon.model import AlertKind
from tests.cluster.test_partitions import late_pipelines

LOW, HIGH = frozenset(range(8)), frozenset(range(8, 16))


@pytest.fixture
def two(db_url, clock):
    from pipemon.app import build

    keys = late_pipelines(per_half=2)
    cfg = loads("""
receivers: [{name: hook, webhook: {url: "http://127.0.0.1:9/hook"}}]
route: {receiver: hook, group_by: [team], group_wait: 0s}
pipelines:
""" + "".join(f'  - {{match: "{k}", team: t, schedule: "0 * * * *", grace: 5m}}\n' for k in keys))
    pms = [build(db_url, cfg, clock=clock), build(db_url, cfg, clock=clock)]
    pms[0].writer.partitions, pms[1].writer.partitions = LOW, HIGH
    yield pms, keys
    for p in pms:
        p.close()


def one_run(pm, clock, pipeline: str, status: str, run_id: str) -> None:
    """A run of `pipeline` starts and ends now (`status`: COMPLETE or FAIL), through pm's writer."""
    import msgspec

    from pipemon.ingest import native

    t = clock.now()
    body = msgspec.json.encode([{"pipeline": pipeline, "run_id": run_id, "type": "START", "event_time": t},
                                {"pipeline": pipeline, "run_id": run_id, "type": status, "event_time": t + 1,
                                 "error": "boom"}])
    pm.writer.ingest(native.parse(body, t))


def rows(pm, sql: str) -> list:
    with pm.db.connect() as c:
        return list(c.execute(sa.text(sql)))


def test_each_writer_fires_only_its_own_deadlines_once(two, clock):
    (a, b), keys = two
    a.writer.tick()
    b.writer.tick()  # both declared their own half, loaded, found nothing due yet
    assert {r[0] for r in rows(a, "SELECT key FROM pipelines")} == set(keys)
    clock.advance(2 * 3600)
    a.writer.tick()
    late = {r[0] for r in rows(a, "SELECT pipeline FROM alerts WHERE kind = 'late'")}
    assert late == {k for k in keys if partition_of(k) in LOW}
    b.writer.tick()
    a.writer.tick()
    b.writer.tick()  # a second look by either finds its alerts open: nothing fires twice
    got = rows(a, "SELECT pipeline, count(*) FROM alerts WHERE kind = 'late' GROUP BY pipeline")
    assert dict(got) == {k: 1 for k in keys}
    marks = {r[0] for r in rows(a, "SELECT name FROM checkpoints WHERE name LIKE 'engine%'")}
    assert marks == {f"engine:{n}" for n in range(16)}  # one per partition, none for the single writer
    pieces = {r[0] for r in rows(a, "SELECT name FROM engine_blobs WHERE name LIKE 'dispatch%'")}
    assert "dispatch" not in pieces and {f"dispatch:{partition_of(k)}" for k in keys} <= pieces


def test_an_operator_change_to_the_other_writers_alert_names_its_partition(two, clock):
    (a, b), keys = two
    a.writer.tick()
    b.writer.tick()
    clock.advance(2 * 3600)
    a.writer.tick()
    b.writer.tick()
    theirs = next(k for k in keys if partition_of(k) in HIGH)
    alert_id = rows(a, f"SELECT id FROM alerts WHERE pipeline = '{theirs}'")[0][0]
    with pytest.raises(Unavailable, match=f"partition {partition_of(theirs)}"):
        a.writer.call(lambda conn, now: a.alerts.acknowledge(conn, alert_id, "op", now))
    acked = b.writer.call(lambda conn, now: b.alerts.acknowledge(conn, alert_id, "op", now))
    assert acked.pipeline == theirs


def test_the_next_owner_of_a_partition_loads_its_state_and_fires_nothing_again(two, db_url, clock):
    from pipemon.app import build

    (a, b), keys = two
    a.writer.tick()
    b.writer.tick()
    clock.advance(2 * 3600)
    a.writer.tick()
    b.writer.tick()
    b.close()  # b's partitions go to a new writer owning all 16: it reloads them from the store
    c = build(db_url, a.settings, clock=clock)
    try:
        c.writer.partitions = LOW | HIGH
        c.writer.tick()
        assert {a.pipeline for a in c.alerts.book.open.values()} == set(keys)
        got = rows(c, "SELECT pipeline, count(*) FROM alerts WHERE kind = 'late' GROUP BY pipeline")
        assert dict(got) == {k: 1 for k in keys}
    finally:
        c.close()


def test_a_downstream_late_on_one_writer_attaches_to_the_upstream_failure_the_other_keeps(db_url, clock,
                                                                                         monkeypatch):
    """One page per root cause across partitions: the upstream fails on writer a, the downstream it feeds
    (writer b) goes late: b's late alert is attached to a's failure, not paged; when the upstream recovers,
    b resolves it at its next look at the store."""
    import msgspec

    import pipemon.writer.alerts as writer_alerts
    from pipemon.app import build

    monkeypatch.setattr(writer_alerts, "ROOTS_SYNC_S", 0.0)  # look at the other writer's roots every tick
    up = next(f"up/p{i}" for i in range(100) if partition_of(f"up/p{i}") in LOW)
    down = next(f"dn/p{i}" for i in range(100) if partition_of(f"dn/p{i}") in HIGH)
    cfg = loads(f"""
receivers: [{{name: hook, webhook: {{url: "http://127.0.0.1:9/hook"}}}}]
route: {{receiver: hook, group_by: [pipeline], group_wait: 0s}}
pipelines:
  - {{match: "{up}", team: up, schedule: "0 * * * *", grace: 5m}}
  - {{match: "{down}", team: down, schedule: "0 * * * *", grace: 5m, depends_on: ["{up}"]}}
""")
    a, b = build(db_url, cfg, clock=clock), build(db_url, cfg, clock=clock)
    a.writer.partitions, b.writer.partitions = LOW, HIGH

    def run(status: str, run_id: str) -> None:
        one_run(a, clock, up, status, run_id)
    try:
        a.writer.tick()
        b.writer.tick()
        clock.advance(40 * 60)
        run("FAIL", "r1")  # the upstream fails on a
        a.writer.tick()
        clock.advance(2 * 3600)  # the downstream, never run, goes late on b
        a.writer.tick()
        b.writer.tick()
        late = b.alerts.book.open[fingerprint(down, AlertKind.LATE)]
        assert late.root_pipeline == up and late.root_cause == fingerprint(up, AlertKind.FAILURE)
        paged = rows(b, "SELECT fingerprints FROM notifications WHERE action = 'trigger'")
        assert not any(late.fingerprint in r[0] for r in paged), "the downstream's late was paged"
        run("COMPLETE", "r2")  # the upstream recovers on a
        a.writer.tick()
        b.writer.tick()
        state = rows(b, f"SELECT state, body FROM alerts WHERE pipeline = '{down}' AND kind = 'late'")
        assert [s for s, _ in state] == ["resolved"]
        assert "recovered" in msgspec.json.decode(state[0][1])["resolved_by"]
    finally:
        a.close()
        b.close()


def test_an_inhibition_source_on_one_writer_quiets_its_target_on_the_other(db_url, clock, monkeypatch):
    """An inhibition rule whose source alert the other writer keeps: the target is not paged while the
    source is open, and is paged at its group's next flush after the source resolved."""

    import pipemon.writer.alerts as writer_alerts
    from pipemon.app import build

    monkeypatch.setattr(writer_alerts, "ROOTS_SYNC_S", 0.0)
    src = next(f"src/p{i}" for i in range(100) if partition_of(f"src/p{i}") in LOW)
    tgt = next(f"tgt/p{i}" for i in range(100) if partition_of(f"tgt/p{i}") in HIGH)
    cfg = loads(f"""
receivers: [{{name: hook, webhook: {{url: "http://127.0.0.1:9/hook"}}}}]
route: {{receiver: hook, group_by: [pipeline], group_wait: 0s, group_interval: 1m}}
inhibit_rules:
  - {{source_matchers: ['kind="failure"'], target_matchers: ['kind="late"'], equal: [team]}}
pipelines:
  - {{match: "{src}", team: t}}
  - {{match: "{tgt}", team: t, schedule: "0 * * * *", grace: 5m}}
""")
    a, b = build(db_url, cfg, clock=clock), build(db_url, cfg, clock=clock)
    a.writer.partitions, b.writer.partitions = LOW, HIGH

    def run(status: str, run_id: str) -> None:
        one_run(a, clock, src, status, run_id)

    def paged(fp: str) -> bool:
        triggers = rows(b, "SELECT fingerprints FROM notifications WHERE action = 'trigger'")
        return any(fp in r[0] for r in triggers)
    try:
        a.writer.tick()
        b.writer.tick()
        run("FAIL", "r1")  # the source opens on a
        a.writer.tick()
        clock.advance(2 * 3600)  # the target goes late on b
        a.writer.tick()
        b.writer.tick()
        late = fingerprint(tgt, AlertKind.LATE)
        assert late in b.alerts.book.open and not paged(late), "paged while its source was open elsewhere"
        run("COMPLETE", "r2")  # the source resolves on a
        a.writer.tick()
        for _ in range(3):  # the target's group flushes again
            clock.advance(61)
            b.writer.tick()
        assert paged(late), "not paged after its source resolved"
    finally:
        a.close()
        b.close()
