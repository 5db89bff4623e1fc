"""Operator changes sent to any node reach the worker that keeps them (cluster/relay.py), for real: an api
node and 2 partitioned workers on the shared PostgreSQL and NATS.

- Failure alerts of pipelines in both workers' halves are acknowledged and resolved through the api node
  and through the worker that does not own them: each answer is the owner's (200, the alert's new state),
  and the store and the audit log hold the change once.
- A silence and a dashboard form post through the api node; the form's redirect comes back as sent.
- No worker running: the api node answers 503 with Retry-After at once, naming why, and changes nothing.
- A receiver failing on a dispatcher: its `receiver_failing` alert opens on the worker, and resolves.
"""
from __future__ import annotations

import time

import httpx
import msgspec
import pytest

from pipemon.log import partition_of
from tests.alerting.delivery_helpers import FlakyReceiver
from tests.cluster.conftest import Cluster, count, ready, wait_until
from tests.cluster.test_cluster import CONFIG
from tests.cluster.test_partitions import late_pipelines, owned, split_evenly

pytestmark = pytest.mark.slow


def failing(keys: list[str]) -> bytes:
    t = time.time() - 60
    events = []
    for i, key in enumerate(keys):
        events.append({"pipeline": key, "run_id": f"r{i}", "type": "START", "event_time": t})
        events.append({"pipeline": key, "run_id": f"r{i}", "type": "FAIL", "event_time": t + 5,
                       "error": "boom"})
    return msgspec.json.encode(events)


def test_operator_changes_sent_anywhere_are_made_by_the_owner(owned_db, prefix, tmp_path):
    _, _, db = owned_db
    keys = late_pipelines(namespace="ops")  # in both halves: each worker owns some
    cluster = Cluster(db, tmp_path, prefix, None)
    cluster.worker_mode = "partitioned"
    try:
        workers = [cluster.start("worker"), cluster.start("worker")]
        api = cluster.start("api")
        wait_until(lambda: ready(api).get("status") == "ready", "the api node", 30)
        halves = split_evenly(workers)
        assert all({partition_of(k) for k in keys} & h for h in halves), "each worker owns some of them"
        r = httpx.post(api.url + "/api/v1/events", content=failing(keys),
                       headers={"Content-Type": "application/json"}, timeout=15)
        assert r.status_code == 200, r.text
        firing = {"state": "firing"}
        alerts = wait_until(lambda: (items := httpx.get(api.url + "/api/v1/alerts", params=firing,
                                                        timeout=5).json()["items"])
                            and len({a["pipeline"] for a in items}) == len(keys) and items,
                            "a failure alert for each pipeline", 60)
        by_key = {a["pipeline"]: a for a in alerts if a["kind"] == "failure"}
        assert set(by_key) == set(keys)

        def not_owner(key: str):
            return next(w for w in workers if partition_of(key) not in (owned(w) or set()))

        for i, key in enumerate(keys):
            aid = by_key[key]["id"]
            via = api if i % 2 == 0 else not_owner(key)  # never the owner itself
            r = httpx.post(f"{via.url}/api/v1/alerts/{aid}/ack", json={"comment": "on it"}, timeout=20)
            assert r.status_code == 200, (via.role, r.text)
            assert r.json()["state"] == "acknowledged" and r.json()["id"] == aid
        for i, key in enumerate(keys):
            aid = by_key[key]["id"]
            via = not_owner(key) if i % 2 == 0 else api
            r = httpx.post(f"{via.url}/api/v1/alerts/{aid}/resolve", json={}, timeout=20)
            assert r.status_code == 200, (via.role, r.text)
            assert r.json()["state"] == "resolved"
        assert count(db, "SELECT count(*) FROM audit_log WHERE action = 'alert.acknowledge'") == len(keys)
        assert count(db, "SELECT count(*) FROM audit_log WHERE action = 'alert.resolve'") == len(keys)

        # a silence (any worker may make it) and a dashboard form post, both through the api node
        silence = {"matchers": ['pipeline="ops/x"'], "duration": "1h"}
        r = httpx.post(api.url + "/api/v1/silences", json=silence, timeout=20)
        assert r.status_code == 200 and r.json()["state"] == "active", r.text
        assert count(db, "SELECT count(*) FROM silences") == 1
        r = httpx.post(f"{api.url}/silences/{r.json()['id']}/expire", data={"next": "/alerts"}, timeout=20)
        assert r.status_code == 303 and r.headers["location"].startswith("/alerts?notice="), r.text
        assert count(db, "SELECT count(*) FROM audit_log WHERE action = 'silence.expire'") == 1

        # an alert that does not exist: the owner's own answer, not the relay's
        r = httpx.post(api.url + "/api/v1/alerts/999999/ack", json={}, timeout=20)
        assert r.status_code == 404, r.text

        for w in workers:
            w.stop()
        started = time.monotonic()
        r = httpx.post(f"{api.url}/api/v1/alerts/{by_key[keys[0]]['id']}/ack", json={}, timeout=20)
        assert r.status_code == 503 and r.headers["retry-after"], r.text
        assert "no worker keeping it answers" in r.json()["message"]
        assert time.monotonic() - started < 5, "no responders is known at once, not after a timeout"
    finally:
        cluster.stop()


# the cluster tests' webhook receiver and route, with receiver_failing raised after 2 failed deliveries
RECEIVER_CONFIG = "alerting: {{receiver_failure_threshold: 2}}\n" + CONFIG


def test_a_receiver_failing_on_a_dispatcher_raises_and_resolves_its_alert_on_the_worker(owned_db, prefix,
                                                                                       tmp_path):
    """A dispatcher holds no engine state: the receiver's status crosses to the worker over NATS, which
    opens `receiver_failing` when deliveries keep failing and resolves it when they work again."""
    _, _, db = owned_db
    hook = FlakyReceiver("down")
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(RECEIVER_CONFIG.format(url=hook.url))
    cluster = Cluster(db, tmp_path, prefix, str(cfg))

    def states() -> list[str]:
        return [a["state"] for a in httpx.get(api.url + "/api/v1/alerts", timeout=5, params={
            "state": "firing,acknowledged,resolved", "kind": "receiver_failing"}).json()["items"]]
    try:
        cluster.start("worker")
        cluster.start("dispatcher")
        api = cluster.start("api")
        wait_until(lambda: ready(api).get("status") == "ready", "the api node", 30)
        r = httpx.post(api.url + "/api/v1/events", content=failing([f"rf/p{i}" for i in range(3)]),
                       headers={"Content-Type": "application/json"}, timeout=15)
        assert r.status_code == 200, r.text
        wait_until(lambda: states() == ["firing"], "receiver_failing raised on the worker", 60, every=0.5)
        assert hook.refused >= 2
        hook.mode = "ok"
        wait_until(lambda: states() == ["resolved"], "receiver_failing resolved once deliveries work", 90,
                   every=0.5)
        assert hook.wait_for(lambda h: len(h.on("/hook")) >= 3, 30), "the held notifications delivered"
    finally:
        cluster.stop()
        hook.close()
