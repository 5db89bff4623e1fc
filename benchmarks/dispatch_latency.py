#!/usr/bin/env python3
"""Dispatcher-side latency: from the moment a dispatcher learns of a new notification to its POST arriving
at a local webhook receiver (no other work queued).

- cluster: shared Deliverers (1 and 3, as dispatcher nodes) on PostgreSQL; each sample commits
  one pending row, then calls `poll_soon()` on every dispatcher, as the NATS `{prefix}.outbox` wake-up does
  (the NATS hop itself is not in the figure): they claim (`FOR UPDATE SKIP LOCKED`, skipping each other)
  and one sends.
- embedded: the one Deliverer of a SQLite store; each sample hands a row the writer just committed to
  `enqueue()`, as the writer does after its commit.

Prints p50/p99 of the latency and the process CPU time per notification.

    python benchmarks/dispatch_latency.py [--samples 300] [--pg postgresql+psycopg://…/db]
                                          [--modes cluster,embedded] [--dispatchers 1,3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import httpx
import msgspec
import sqlalchemy as sa

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from pipemon.app import build  # noqa: E402
from pipemon.clock import WallClock  # noqa: E402
from pipemon.cluster.dispatcher import new_deliverer  # noqa: E402
from pipemon.config import loads  # noqa: E402
from pipemon.model import AlertState, AlertView, Notification, NotifyAction, Severity  # noqa: E402
from pipemon.store import alerting as store  # noqa: E402
from pipemon.store import db  # noqa: E402

CONFIG = """
receivers:
  - name: hook
    rate_limit: {{per_second: 10000, burst: 10000}}
    webhook: {{url: "{url}/hook"}}
route:
  receiver: hook
"""


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else the answer's second write waits ~40 ms for a delayed ACK

            def do_POST(self) -> None:  # noqa: N802
                t = time.perf_counter()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.cond:
                    outer.arrived.setdefault(self.headers["Idempotency-Key"], t)
                    outer.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, key: str, timeout: float = 10.0) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.arrived, timeout):
                raise RuntimeError(f"{key} never arrived")
            return self.arrived[key]


def notification(key: str) -> Notification:
    now = time.time()
    a = AlertView(fingerprint=f"fp-{key}", pipeline="bench/p", team="bench", kind="failure",
                  severity=Severity.CRITICAL, state=AlertState.FIRING, summary="bench/p failed",
                  description="", labels={"pipeline": "bench/p"}, started_at=now, last_seen=now)
    return Notification(id=0, receiver="hook", action=NotifyAction.TRIGGER, group_key=key,
                        group_labels={"pipeline": "bench/p"}, alerts=(a,), time=now, key=key)


def insert(conn, n: Notification, now: float) -> int | None:
    return store.insert_notification(conn, key=n.key, receiver="hook", action=n.action.value,
                                     group_key=n.group_key, teams=["bench"], fingerprints=[f"fp-{n.key}"],
                                     body=msgspec.json.encode(n).decode(), now=now)


def summary(name: str, lat: list[float], cpu: float) -> None:
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    print(f"{name}: {len(lat)} samples  p50 {p(0.5):.2f} ms  p90 {p(0.9):.2f} ms  p99 {p(0.99):.2f} ms  "
          f"max {lat[-1] * 1000:.2f} ms  mean {statistics.mean(lat) * 1000:.2f} ms  "
          f"CPU {cpu / len(lat) * 1e3:.2f} ms/notification (whole process)", flush=True)


def bench_cluster(pg: str, samples: int, dispatchers: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    base = db.normalize_url(pg)
    admin = sa.create_engine(base)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    rec = Receiver()
    settings = loads(CONFIG.format(url=rec.url))
    writer = db.open_engine(url)
    db.upgrade(writer)
    ds = []
    try:
        for _ in range(dispatchers):
            pm = SimpleNamespace(db=db.open_engine(url), clock=WallClock(), settings=settings)
            d = new_deliverer(pm, http=httpx.Client(timeout=10))
            d.start()
            ds.append(d)
        time.sleep(1.5)  # every dispatcher has made its first claim
        lat: list[float] = []
        cpu0 = time.process_time()
        for i in range(samples + 20):
            n = notification(f"c{i}")
            with writer.begin() as c:
                insert(c, n, time.time())
            t0 = time.perf_counter()
            for d in ds:
                d.poll_soon()
            t1 = rec.wait(n.key)
            if i >= 20:  # warm-up: connections, first requests
                lat.append(t1 - t0)
            time.sleep(0.01)  # let the record be stored: the sample measures an idle dispatcher
        summary(f"cluster ({dispatchers} dispatchers, PostgreSQL): wake -> POST", lat,
                time.process_time() - cpu0)
    finally:
        for d in ds:
            d.stop()
            d.pm.db.dispose()
        writer.dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
        rec.server.shutdown()


def bench_embedded(samples: int) -> None:
    rec = Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        pm = build(f"sqlite:///{tmp}/bench.db", loads(CONFIG.format(url=rec.url)))
        pm.start()
        d = pm.deliverer
        assert d is not None
        try:
            time.sleep(1.5)
            lat: list[float] = []
            cpu0 = time.process_time()
            for i in range(samples + 20):
                n = notification(f"e{i}")
                nid = pm.writer.call(lambda c, now, n=n: insert(c, n, now))
                t0 = time.perf_counter()
                d.enqueue([msgspec.structs.replace(n, id=nid)])
                t1 = rec.wait(n.key)
                if i >= 20:
                    lat.append(t1 - t0)
                time.sleep(0.01)
            summary("embedded (SQLite): enqueue -> POST", lat, time.process_time() - cpu0)
        finally:
            pm.close()
            rec.server.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--pg", default=os.environ.get("PIPEMON_TEST_POSTGRES_URL"))
    ap.add_argument("--modes", default="cluster,embedded")
    ap.add_argument("--dispatchers", default="1,3", help="cluster runs, one per count")
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    modes = a.modes.split(",")
    if "cluster" in modes:
        if not a.pg:
            print("cluster: skipped (no --pg and no PIPEMON_TEST_POSTGRES_URL)")
        else:
            for k in a.dispatchers.split(","):
                bench_cluster(a.pg, a.samples, int(k))
    if "embedded" in modes:
        bench_embedded(a.samples)
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
