#!/usr/bin/env python3
"""The cluster path, measured: real `pipemon serve --role …` processes on PostgreSQL and NATS JetStream.

  1. api: events/s acknowledged by ONE api node (2xx = every PubAck in), and its CPU per 1,000 events
     (utime+stime of the server process from /proc), for single OpenLineage POSTs and native batches of 100
     and 1,000. No worker runs meanwhile: the figure is the api node's alone.
  2. end to end: a backlog of --e2e-events events in the log, then 1 worker, then 2 workers, timed until the
     store holds all of them (events/s evaluated: stored, folded, health, detectors, alerts).
  3. FAIL → webhook: api + worker + dispatcher, group_wait 0s; each sample POSTs an OpenLineage FAIL for a
     new pipeline and times until the webhook carrying it arrives at a receiver in this process.

    python benchmarks/cluster.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        --bus nats://127.0.0.1:4222 [--quick] [--phases api,e2e,latency]

The api node alone (phase 1), and side by side with Alertmanager (the shared harness; its pipemon is an
api node of a cluster, so the figure is the api path's: no database write while ingesting):

    python benchmarks/cluster.py --phases api
    psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE sbs'     # once: the api node's own database
    python /work/shared/bench/perf/side_by_side.py --pipemon $VENV/bin/pipemon --out /tmp/sbs.json \\
        --pipemon-arg=--role --pipemon-arg=api --pipemon-arg=--bus --pipemon-arg=nats://127.0.0.1:4222 \\
        --pipemon-arg=--bus-prefix --pipemon-arg=sbs --pipemon-arg=--db \\
        --pipemon-arg=postgresql+psycopg://postgres@127.0.0.1:5432/sbs
    (the last --db wins over the harness's SQLite one; the stream sbs_events stays until deleted)

Each phase uses its own PostgreSQL schema and its own --bus-prefix (stream), dropped at the end. The load
generator runs in this process, on the same 2 cores as the servers: figures are for this machine as it was
during the run (shared with other work: say so when reporting).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import httpx
import sqlalchemy as sa
from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from _load import native_event, ol_event  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
HDR = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Node:
    def __init__(self, role: str, db: str, bus: str, prefix: str, work: Path, config: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "pipemon", "serve", "--role", role, "--db", db, "--bus", bus,
               "--bus-prefix", prefix, "--port", str(self.port)]
        if config:
            cmd += ["--config", str(config)]
        self.log = open(work / f"{role}-{self.port}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, part: str | None = None, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                body = httpx.get(self.url + "/readyz", timeout=1).json()
                comp = body.get("components", {})
                leading = part is None or comp.get(part, "").startswith("leading")
                if body.get("status") == "ready" and leading:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"node {self.url} not ready (see {self.log.name})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Schema:
    def __init__(self, base: str) -> None:
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self.admin = sa.create_engine(base)
        with self.admin.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {self.name}")
        sep = "&" if "?" in base else "?"
        self.url = f"{base}{sep}options=-csearch_path%3D{self.name}"

    def count(self, sql: str) -> int:
        eng = sa.create_engine(self.url)
        try:
            with eng.connect() as c:
                return int(c.exec_driver_sql(sql).scalar() or 0)
        finally:
            eng.dispose()

    def drop(self) -> None:
        with self.admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {self.name} CASCADE")
        self.admin.dispose()


async def drop_stream(bus: str, prefix: str) -> None:
    import nats
    nc = await nats.connect(bus)
    try:
        await nc.jetstream().delete_stream(f"{prefix}_events")
    except Exception:  # noqa: BLE001
        pass
    await nc.close()


def bodies(kind: str, n_posts: int, per_post: int, pipelines: int, tag: str) -> list[bytes]:
    now = datetime.now(timezone.utc)
    out = []
    i = 0
    for _ in range(n_posts):
        items = []
        for _ in range(per_post):
            when = now - timedelta(microseconds=n_posts * per_post - i)
            p = i % pipelines
            run = str(uuid.uuid4())
            if kind == "ol":
                items.append(ol_event("bench", f"{tag}_{p}", run, when, 1000 + i % 97))
            else:
                items.append(native_event("bench", f"{tag}_{p}", run, uuid.uuid4().hex, when, 1000 + i % 97))
            i += 1
        out.append(json.dumps(items[0] if kind == "ol" else items).encode())
    return out


async def post_all(url: str, path: str, payloads: list[bytes], conc: int) -> tuple[float, dict[int, int]]:
    statuses: dict[int, int] = {}
    it = iter(payloads)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
        async def one() -> None:
            for body in it:
                async with s.post(url + path, data=body, headers=HDR) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(conc)))
        return time.perf_counter() - t0, statuses


def phase_api(a, work: Path) -> list[dict]:
    schema = Schema(a.db)
    prefix = "bench" + uuid.uuid4().hex[:8]
    api = Node("api", schema.url, a.bus, prefix, work)
    rows = []
    try:
        api.wait_ready()
        scale = 0.3 if a.quick else 1.0
        cases = [("single OpenLineage POST", "ol", "/api/v1/lineage", int(6000 * scale), 1, 32),
                 ("native batch of 100", "native", "/api/v1/events", int(400 * scale), 100, 8),
                 ("native batch of 1,000", "native", "/api/v1/events", int(60 * scale), 1000, 4)]
        for label, kind, path, n, per, conc in cases:
            payloads = bodies(kind, n, per, 200, uuid.uuid4().hex[:6])
            asyncio.run(post_all(api.url, path, payloads[: max(1, n // 10)], conc))  # warm-up
            c0 = cpu_s(api.proc.pid)
            wall, statuses = asyncio.run(post_all(api.url, path, payloads, conc))
            cpu = cpu_s(api.proc.pid) - c0
            events = n * per
            rows.append({"case": label, "events": events, "wall_s": round(wall, 2),
                         "acked_events_per_s": round(events / wall), "statuses": statuses,
                         "server_cpu_us_per_event": round(cpu / events * 1e6, 1),
                         "load_average": os.getloadavg()[0]})
            print(f"  {label}: {events / wall:,.0f} events/s acknowledged, server CPU "
                  f"{cpu / events * 1e6:.1f} µs an event (= ms per 1,000) ({statuses}; load "
                  f"{os.getloadavg()[0]:.1f})", flush=True)
    finally:
        api.stop()
        asyncio.run(drop_stream(a.bus, prefix))
        schema.drop()
    return rows


def phase_e2e(a, work: Path) -> list[dict]:
    rows = []
    n = 10_000 if a.quick else a.e2e_events
    for workers in (1, 2):
        schema = Schema(a.db)
        prefix = "bench" + uuid.uuid4().hex[:8]
        api = Node("api", schema.url, a.bus, prefix, work)
        nodes: list[Node] = []
        try:
            api.wait_ready()
            payloads = bodies("native", n // 1000, 1000, 500, uuid.uuid4().hex[:6])
            asyncio.run(post_all(api.url, "/api/v1/events", payloads, 4))
            nodes = [Node("worker", schema.url, a.bus, prefix, work) for _ in range(workers)]
            # timed from the moment a worker leads (process start and state load excluded)
            lead = wait_leader(nodes, "worker")
            t0 = time.perf_counter()
            base = schema.count("SELECT count(*) FROM events")
            deadline = time.monotonic() + 600
            while schema.count("SELECT count(*) FROM events") < n and time.monotonic() < deadline:
                time.sleep(0.25)
            wall = time.perf_counter() - t0
            stored = schema.count("SELECT count(*) FROM events")
            c = cpu_s(lead.proc.pid)
            rows.append({"workers": workers, "events": n, "stored": stored, "wall_s": round(wall, 1),
                         "evaluated_events_per_s": round((stored - base) / wall),
                         "leader_cpu_s_total": round(c, 1)})
            print(f"  {workers} worker(s): {stored - base:,} events evaluated in {wall:.1f} s = "
                  f"{(stored - base) / wall:,.0f} events/s (leader's CPU since start {c:.1f} s)", flush=True)
        finally:
            for x in [api, *nodes]:
                x.stop()
            asyncio.run(drop_stream(a.bus, prefix))
            schema.drop()
    return rows


def wait_leader(nodes: list[Node], part: str, timeout: float = 120) -> Node:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for x in nodes:
            try:
                comp = httpx.get(x.url + "/readyz", timeout=1).json().get("components", {})
                if comp.get(part, "").startswith("leading"):
                    return x
            except (httpx.HTTPError, ValueError):
                pass
        time.sleep(0.05)
    raise SystemExit(f"no {part} leads")


def phase_latency(a, work: Path) -> dict:
    arrived: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        for alert in body.get("alerts", []):
            arrived.setdefault(alert.get("labels", {}).get("pipeline", ""), time.perf_counter())
        return web.Response(text="ok")

    async def run() -> dict:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        cfg = work / "latency.yaml"
        cfg.write_text(f"""
receivers:
  - name: hook
    webhook: {{url: "http://127.0.0.1:{port}/hook"}}
route:
  receiver: hook
  group_by: [pipeline]
  group_wait: 0s
""")
        schema = Schema(a.db)
        prefix = "bench" + uuid.uuid4().hex[:8]
        nodes = [Node(r, schema.url, a.bus, prefix, work, cfg) for r in ("worker", "dispatcher", "api")]
        lat: list[float] = []
        missed = 0
        try:
            await asyncio.to_thread(nodes[0].wait_ready, "worker")
            await asyncio.to_thread(nodes[1].wait_ready, "dispatcher")
            await asyncio.to_thread(nodes[2].wait_ready)
            async with aiohttp.ClientSession() as s:
                for i in range(20 if a.quick else a.samples):
                    name = f"lat_{uuid.uuid4().hex[:8]}"
                    now = datetime.now(timezone.utc)
                    ev = ol_event("bench", name, str(uuid.uuid4()), now, 1)
                    ev["eventType"] = "FAIL"
                    t0 = time.perf_counter()
                    url = nodes[2].url + "/api/v1/lineage"
                    async with s.post(url, data=json.dumps(ev), headers=HDR) as r:
                        assert r.status == 200, await r.text()
                    key = f"bench/{name}"
                    while key not in arrived and time.perf_counter() - t0 < 5:
                        await asyncio.sleep(0.0005)
                    if key in arrived:
                        lat.append((arrived[key] - t0) * 1000)
                    else:
                        missed += 1
                    await asyncio.sleep(0.05)
        finally:
            for x in nodes:
                await asyncio.to_thread(x.stop)
            await drop_stream(a.bus, prefix)
            schema.drop()
            await runner.cleanup()
        lat.sort()
        out = {"samples": len(lat), "missed": missed,
               "p50_ms": round(statistics.median(lat), 1) if lat else None,
               "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1) if lat else None}
        print(f"  FAIL → webhook: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms ({len(lat)} samples, "
              f"{missed} missed)", flush=True)
        return out
    return asyncio.run(run())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=os.environ.get("PIPEMON_TEST_POSTGRES_URL",
                                                   "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--bus", default=os.environ.get("PIPEMON_TEST_NATS_URL", "nats://127.0.0.1:4222"))
    ap.add_argument("--e2e-events", type=int, default=50_000)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--phases", default="api,e2e,latency")
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the script)")
    ap.add_argument("--out", help="write the figures as JSON here")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pipemon-cluster-bench-"))
    print(f"logs in {work}; cores: {os.cpu_count()}; load average before: {os.getloadavg()}", flush=True)
    result: dict = {}
    phases = a.phases.split(",")
    if "api" in phases:
        print("1. one api node, events acknowledged (no worker running)", flush=True)
        result["api"] = phase_api(a, work)
    if "e2e" in phases:
        print("2. end to end: a backlog in the log, evaluated by 1 then 2 workers", flush=True)
        result["e2e"] = phase_e2e(a, work)
    if "latency" in phases:
        print("3. FAIL → webhook through api → log → worker → outbox → dispatcher", flush=True)
        result["latency"] = phase_latency(a, work)
    print(f"load average after: {os.getloadavg()}", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
