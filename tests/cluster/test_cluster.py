"""The cluster end to end: real `pipemon serve --role …` processes, the real PostgreSQL and NATS.

- 2 api, 2 worker and 1 dispatcher nodes take 50,000 events of the demo fleet; the leading worker and the
  dispatcher are SIGKILLed midway and a new dispatcher started: every acknowledged event is stored exactly
  once, every failing pipeline has its failure alert, the webhook got every notification (duplicates only
  for what was in flight at the kill, under the same idempotency key).
- PostgreSQL cut for 30 s: the api node keeps acknowledging (into JetStream), the worker catches up.
- NATS unreachable from the api node: 503 with Retry-After, and nothing acknowledged is lost.
"""
from __future__ import annotations

import time
from itertools import islice

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from pipemon.sim.feed import Feeder
from pipemon.sim.fleet import build_fleet
from tests.alerting.delivery_helpers import FlakyReceiver
from tests.cluster.conftest import Cluster, Poster, count, leader, ready, wait_until

pytestmark = pytest.mark.slow

CONFIG = """
receivers:
  - name: hook
    rate_limit: {{per_second: 500, burst: 500}}
    webhook: {{url: "{url}/hook"}}
route:
  receiver: hook
  group_by: [pipeline]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
"""


def fleet_events(n: int, pipelines: int = 240, days: float = 3.5) -> list[dict]:
    """The first n events of the demo fleet's last `days` (ending about now), native format."""
    now = time.time()
    feeder = Feeder(build_fleet(0, pipelines), now - days * 86400, fmt="native")
    return list(islice(feeder.history(now - days * 86400, now), n))


def batches(events: list[dict], size: int) -> list[bytes]:
    return [msgspec.json.encode(events[i:i + size]) for i in range(0, len(events), size)]


def idem_key(request: dict) -> str:
    return next(v for k, v in request["headers"].items() if k.lower() == "idempotency-key")


def test_two_api_two_workers_one_dispatcher_survive_kills(owned_db, prefix, tmp_path):
    _, _, db = owned_db
    hook = FlakyReceiver("ok")
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(CONFIG.format(url=hook.url))
    events = fleet_events(50_000)
    assert len(events) == 50_000
    cluster = Cluster(db, tmp_path, prefix, str(cfg))
    cluster.worker_mode = "partitioned"  # both workers active; the kill hands one's partitions over
    try:
        workers = [cluster.start("worker"), cluster.start("worker")]
        dispatcher = cluster.start("dispatcher")
        apis = [cluster.start("api"), cluster.start("api")]
        for a in apis:
            wait_until(lambda a=a: ready(a).get("status") == "ready", "the api node connected to NATS", 30)
        first = leader(workers, "worker")
        poster = Poster([a.url for a in apis], batches(events, 500))
        poster.thread.start()
        wait_until(lambda: poster.acked >= 25_000, "half the events acknowledged", 120)
        first.kill()
        dispatcher.kill()
        replacement = cluster.start("dispatcher")
        poster.thread.join(300)
        assert not poster.thread.is_alive()
        assert poster.acked == len(events), poster.unexpected

        second = leader(workers, "worker")
        assert second is not first  # the standby took over the partitions
        wait_until(lambda: count(db, "SELECT count(*) FROM events") >= len(events), "the workers to catch up",
                   240, every=1)
        assert count(db, "SELECT count(*) FROM events") == len(events)
        assert count(db, "SELECT count(DISTINCT key) FROM events") == len(events)

        failing = {f"{e['namespace']}/{e['name']}" for e in events
                   if e["type"] == "fail" and "parent" not in e}
        assert failing  # the fleet does fail: the next check means something
        eng = sa.create_engine(db)
        with eng.connect() as c:
            alerted = {r[0] for r in c.exec_driver_sql("SELECT pipeline FROM alerts WHERE kind = 'failure'")}
        assert failing <= alerted, f"no failure alert for {sorted(failing - alerted)[:5]}"

        wait_until(lambda: ready(replacement).get("components", {}).get("dispatcher", "").startswith(
            "active"), "the new dispatcher", 30)
        wait_until(lambda: count(db, "SELECT count(*) FROM notifications WHERE status = 'pending'") == 0,
                   "the outbox to drain", 120, every=1)
        with eng.connect() as c:
            sent = {r[0] for r in c.exec_driver_sql("SELECT key FROM notifications WHERE status = 'sent'")}
            other = c.exec_driver_sql("SELECT count(*) FROM notifications WHERE status <> 'sent'").scalar()
        eng.dispose()
        assert sent and other == 0
        got = [idem_key(r) for r in hook.on("/hook")]
        assert set(got) == sent  # every notification arrived, nothing unknown
        repeats = len(got) - len(set(got))
        assert repeats <= 1, f"{repeats} notifications resent: more than the one in flight at the kill"
    finally:
        cluster.stop()
        hook.close()


def test_postgres_cut_for_30s_loses_nothing_acknowledged(owned_db, prefix, tmp_path):
    via_proxy, proxy, db = owned_db
    cluster = Cluster(via_proxy, tmp_path, prefix, None)
    events = fleet_events(8_000, pipelines=60)
    try:
        cluster.start("worker")
        api = cluster.start("api")
        wait_until(lambda: ready(api).get("status") == "ready", "the api node", 30)
        poster = Poster([api.url], batches(events, 100), hold_after=1_000)
        poster.thread.start()
        wait_until(poster.holding.is_set, "the first events", 60)
        proxy.cut()
        cut_at = time.monotonic()
        acked_before = poster.acked
        poster.go.set()  # the other 7,000 are sent while the database is away
        seen = wait_until(lambda: ready(api).get("components", {}).get("database", "").startswith("unreach")
                          and ready(api), "the api node to see the database gone", 15)
        assert seen["status"] == "ready"  # it still takes events: they wait in the log
        wait_until(lambda: poster.acked >= acked_before + 2_000,
                   f"events acknowledged while the database is cut (acked {acked_before} before the cut; "
                   f"answers so far: {poster.statuses}, unexpected: {poster.unexpected})", 25)
        stored_during = count(db, "SELECT count(*) FROM events")
        time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
        proxy.restore()
        poster.thread.join(120)
        assert poster.acked == len(events) and poster.refused == 0, poster.unexpected
        assert stored_during < poster.acked  # some were acknowledged only by the log during the cut
        wait_until(lambda: count(db, "SELECT count(*) FROM events") >= len(events), "the worker to catch up",
                   120, every=1)
        assert count(db, "SELECT count(*) FROM events") == len(events)
    finally:
        cluster.stop()


def test_nats_unreachable_answers_503_and_loses_nothing(owned_db, prefix, nats_proxy, tmp_path):
    _, _, db = owned_db
    cluster = Cluster(db, tmp_path, prefix, None)
    events = fleet_events(4_000, pipelines=40)
    try:
        cluster.start("worker")
        api = cluster.start("api", bus=f"nats://127.0.0.1:{nats_proxy.port}")
        wait_until(lambda: ready(api).get("status") == "ready", "the api node", 30)
        poster = Poster([api.url], batches(events, 50), hold_after=500)
        poster.thread.start()
        wait_until(poster.holding.is_set, "the first events", 60)
        nats_proxy.cut()
        poster.go.set()  # the other 3,500 meet the cut
        wait_until(lambda: poster.refused >= 3, "503 answers while NATS is away", 20)
        body = ready(api)
        assert body["status"] == "not ready" and "event_log" in body["failing"]
        time.sleep(3)
        nats_proxy.restore()
        poster.thread.join(120)
        assert poster.acked == len(events), poster.unexpected
        assert poster.statuses.get(503, 0) >= 1 and poster.retry_after <= {"2"}
        wait_until(lambda: count(db, "SELECT count(*) FROM events") >= len(events), "the worker", 60, every=1)
        assert count(db, "SELECT count(*) FROM events") == len(events)
    finally:
        cluster.stop()


def test_watchdog_heartbeats_metrics_and_operator_actions_relayed_to_the_leader(owned_db, prefix, tmp_path):
    _, _, db = owned_db
    hook = FlakyReceiver("ok")
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(CONFIG.format(url=hook.url))
    cluster = Cluster(db, tmp_path, prefix, str(cfg))
    try:
        node = cluster.start_with("all", ["--watchdog-receiver", "hook", "--watchdog-every", "1"])
        api = cluster.start("api")
        leader([node], "worker")
        assert hook.wait_for(lambda h: len(h.on("/hook")) >= 2, 30), "no heartbeats"
        beats = hook.on("/hook")
        assert {b["body"]["alerts"][0]["labels"]["kind"] for b in beats} == {"watchdog"}
        assert len({idem_key(b) for b in beats}) == len(beats)  # one key per beat

        live = 'pipemon_cluster_live_nodes{role="worker"} 1.0'
        metrics = wait_until(lambda: (t := httpx.get(node.url + "/metrics").text) and live in t and t,
                             "live workers", 20)
        assert 'pipemon_log_consumer_lag{partition="15"}' in metrics
        assert "pipemon_outbox_depth" in metrics and 'pipemon_cluster_leading{role="worker"} 1.0' in metrics

        # an operator change sent to the api node is relayed to the leading worker, which answers it
        # (tests/cluster/test_relay.py for real alerts): here, that no alert 999 is open
        r = httpx.post(api.url + "/api/v1/alerts/999/ack", json={}, timeout=20)
        assert r.status_code == 404 and "999" in r.json()["message"], r.text
    finally:
        cluster.stop()
        hook.close()
