"""Several active workers, for real: `pipemon serve --role worker` processes on the shared PostgreSQL and
NATS.

- 2 workers split the 16 partitions 8/8 and both commit events; one is SIGKILLed mid-load: the other owns
  all 16 within seconds, and every acknowledged event is stored exactly once.
- Timers: pipelines declared with a schedule and never run go late exactly once each (one alert, one
  trigger notification), whichever of the 2 workers owns them.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from pipemon.log import partition_of
from tests.cluster.conftest import Cluster, Poster, count, ready, wait_until
from tests.cluster.test_cluster import batches, fleet_events

pytestmark = pytest.mark.slow

OWNS = re.compile(r"^leading: consuming partitions (\S+) \((\d+) of 16\)")


def owned(node) -> set[int] | None:
    """The partitions a worker's /readyz says it owns (None when it cannot be asked)."""
    if node.proc is None or node.proc.poll() is not None:
        return None
    m = OWNS.match(ready(node).get("components", {}).get("worker", ""))
    if m is None:
        return set()
    parts: set[int] = set()
    for r in m.group(1).split(","):
        lo, _, hi = r.partition("-")
        parts |= set(range(int(lo), int(hi or lo) + 1))
    return parts


def ingested(node) -> float:
    text = httpx.get(node.url + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("pipemon_events_ingested_total{"))


def split_evenly(workers) -> tuple[set[int], set[int]]:
    def even():
        a, b = owned(workers[0]), owned(workers[1])
        return (a, b) if a is not None and b is not None and len(a) == len(b) == 8 and not a & b else None
    return wait_until(even, "the 2 workers to own 8 partitions each", 60, every=0.5)


def test_two_workers_share_the_partitions_and_one_takes_all_when_the_other_dies(owned_db, prefix, tmp_path):
    _, _, db = owned_db
    events = fleet_events(12_000, pipelines=120)
    cluster = Cluster(db, tmp_path, prefix, None)
    cluster.worker_mode = "partitioned"
    try:
        workers = [cluster.start("worker"), cluster.start("worker")]
        api = cluster.start("api")
        wait_until(lambda: ready(api).get("status") == "ready", "the api node connected to NATS", 30)
        a, b = split_evenly(workers)
        assert a | b == set(range(16))

        poster = Poster([api.url], batches(events, 100))
        poster.thread.start()
        wait_until(lambda: poster.acked >= 4_000, "a third of the events acknowledged", 120)
        # both commit: every pipeline's events go to the owner of its partition
        wait_until(lambda: all(ingested(w) > 0 for w in workers), "both workers to commit events", 60)

        workers[1].kill()
        killed_at = time.monotonic()
        wait_until(lambda: owned(workers[0]) == set(range(16)), "the survivor to own all 16 partitions", 60,
                   every=0.2)
        print(f"\nthe survivor owned all 16 partitions {time.monotonic() - killed_at:.1f} s after the kill")
        poster.thread.join(300)
        assert not poster.thread.is_alive()
        assert poster.acked == len(events), poster.unexpected
        wait_until(lambda: count(db, "SELECT count(*) FROM events") >= len(events),
                   "the survivor to catch up", 240, every=1)
        assert count(db, "SELECT count(*) FROM events") == len(events)
        assert count(db, "SELECT count(DISTINCT key) FROM events") == len(events)
        # every partition's checkpoint is the survivor's now, and no partition is owned twice
        assert count(db, "SELECT count(*) FROM checkpoints WHERE name LIKE 'engine:%'") == 16
    finally:
        cluster.stop()


LATE_CONFIG = """
receivers:
  - name: hook
    webhook: {{url: "http://127.0.0.1:9/hook"}}
route:
  receiver: hook
  group_by: [pipeline]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
pipelines:
{pipelines}
"""


def late_pipelines(per_half: int = 3, namespace: str = "late") -> list[str]:
    """Pipeline names whose partitions fall in both halves, so that each of 2 workers owns some."""
    lo, hi = [], []
    i = 0
    while len(lo) < per_half or len(hi) < per_half:
        key = f"{namespace}/p{i}"
        (lo if partition_of(key) < 8 else hi).append(key)
        i += 1
    return lo[:per_half] + hi[:per_half]


def test_a_declared_pipeline_that_never_runs_goes_late_exactly_once_with_two_workers(owned_db, prefix,
                                                                                      tmp_path):
    _, _, db = owned_db
    keys = late_pipelines()
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(LATE_CONFIG.format(pipelines="\n".join(
        f'  - {{match: "{k}", schedule: "* * * * *", grace: 45s}}' for k in keys)))
    cluster = Cluster(db, tmp_path, prefix, str(cfg))
    cluster.worker_mode = "partitioned"
    try:
        workers = [cluster.start("worker"), cluster.start("worker")]
        a, b = split_evenly(workers)
        # the first deadline (the next minute after the first worker declared them, + 45 s) comes after the
        # workers settled: each evaluates its own, and would both open the same alert without ownership
        assert count(db, "SELECT count(*) FROM alerts") == 0
        # each worker owns some of the late pipelines
        assert {partition_of(k) for k in keys} & a and {partition_of(k) for k in keys} & b

        def all_late():
            return count(db, "SELECT count(DISTINCT pipeline) FROM alerts WHERE kind = 'late'") == len(keys)
        wait_until(all_late, "every declared pipeline to go late", 150, every=1)
        time.sleep(5)  # more ticks on both workers: nothing fires twice
        eng = sa.create_engine(db)
        try:
            with eng.connect() as c:
                alerts = c.exec_driver_sql("SELECT pipeline, count(*) FROM alerts WHERE kind = 'late' "
                                           "GROUP BY pipeline").all()
                fps = dict(c.exec_driver_sql("SELECT fingerprint, pipeline FROM alerts WHERE kind = 'late'")
                           .all())
                triggers = c.exec_driver_sql("SELECT fingerprints FROM notifications "
                                             "WHERE action = 'trigger'").scalars().all()
        finally:
            eng.dispose()
        assert dict(alerts) == {k: 1 for k in keys}
        sent: dict[str, int] = {}
        for fp_list in triggers:
            for fp in json.loads(fp_list):
                if fp in fps:
                    sent[fps[fp]] = sent.get(fps[fp], 0) + 1
        assert sent == {k: 1 for k in keys}, "each late pipeline triggered exactly one notification"
        for w in workers:  # a second evaluation of the same deadline fails on the one-open-alert index
            log = Path(w.log.name).read_text(errors="replace")
            errors = [line for line in log.splitlines() if " ERROR " in line or line.startswith("psycopg.")]
            assert not errors and "Traceback" not in log, errors[:4]
    finally:
        cluster.stop()
