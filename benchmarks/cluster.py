#!/usr/bin/env python3
"""The cluster path, measured: real `pipemon serve --role …` processes on PostgreSQL and NATS JetStream.

  1. api: events/s acknowledged by ONE api node (2xx = every PubAck in), and its CPU per 1,000 events
     (utime+stime of the server process from /proc), for single OpenLineage POSTs and native batches of 100
     and 1,000. No worker runs meanwhile: the figure is the api node's alone.
  2. end to end: 1 worker, then 2 (each owning 8 of the 16 partitions, both active), settled first; then
     --e2e-events events posted through one api node, timed from the first POST until the store holds all
     of them (events/s evaluated: stored, folded, health, detectors, alerts), with the workers' CPU.
  2b. takeover: a fleet of --takeover-pipelines pipelines run through 1 worker; a 2nd joins (the shares
     settle: each restarts its writer on 8 partitions), then is SIGKILLed: the time until the survivor owns
     all 16 partitions, and its writer's reload (checkpoint + replay of the whole fleet).
  3. FAIL → webhook: api + worker + dispatcher, group_wait 0s; each sample POSTs an OpenLineage FAIL for a
     new pipeline and times until the webhook carrying it arrives at a receiver in this process; p50/p99
     of the whole and of each hop (api ack, log, worker commit, wake-up, dispatcher), from the nodes'
     `pipemon.trace` lines (the nodes run with that logger at DEBUG).

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
import re
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


# `python -m pipemon`, with the `pipemon.trace` logger at DEBUG: each node logs its hop times (phase 3)
TRACED = "import logging, sys; logging.getLogger('pipemon.trace').setLevel(logging.DEBUG); " \
         "sys.argv[0] = 'pipemon'; from pipemon.cli import main; main()"


class Node:
    def __init__(self, role: str, db: str, bus: str, prefix: str, work: Path, config: Path | None = None,
                 traced: bool = False):
        self.port, self.role = free_port(), role
        self.url = f"http://127.0.0.1:{self.port}"
        run = ["-c", TRACED] if traced else ["-m", "pipemon"]
        cmd = [sys.executable, *run, "serve", "--role", role, "--db", db, "--bus", bus,
               "--bus-prefix", prefix, "--port", str(self.port)]
        if config:
            cmd += ["--config", str(config)]
        if role in ("worker", "all"):  # phase 2 measures several active workers: the partitioned mode
            cmd += ["--worker-mode", "partitioned"]
        self.log_path = work / f"{role}-{self.port}.log"
        self.log = open(self.log_path, "wb")
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


def owned(node: Node) -> set[int] | None:
    """The partitions a worker says it owns (/readyz: "leading: consuming partitions 0-7 (8 of 16)")."""
    try:
        comp = httpx.get(node.url + "/readyz", timeout=1).json().get("components", {})
    except (httpx.HTTPError, ValueError):
        return None
    m = re.match(r"^leading: consuming partitions (\S+) \(", comp.get("worker", ""))
    parts: set[int] = set()
    for r in (m.group(1).split(",") if m else []):
        lo, _, hi = r.partition("-")
        parts |= set(range(int(lo), int(hi or lo) + 1))
    return parts


def wait_split(nodes: list[Node], timeout: float = 120) -> list[set[int]]:
    """Until the workers own disjoint fair shares covering all 16 partitions (the balancing settled)."""
    share = -(-16 // len(nodes))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [owned(x) for x in nodes]
        sets = [g for g in got if g]
        if len(sets) == len(nodes) and all(len(g) <= share for g in sets) and sum(map(len, sets)) == 16 \
                and set().union(*sets) == set(range(16)):
            return sets
        time.sleep(0.1)
    raise SystemExit(f"the workers did not settle on their shares: {[owned(x) for x in nodes]}")


def restarts(node: Node) -> list[float]:
    """The writer restarts a worker logged ("writer restarted in 1.7 s"), in seconds."""
    text = Path(node.log.name).read_text(errors="replace")
    return [float(x) for x in re.findall(r"writer restarted in ([0-9.]+) s", text)]


def phase_e2e(a, work: Path) -> list[dict]:
    """The workers start first and settle on their partitions (1: all 16; 2: 8 each), then the backlog is
    posted through one api node; timed from the first POST until the store holds every event."""
    rows = []
    n = 10_000 if a.quick else a.e2e_events
    for workers in (1, 2):
        schema = Schema(a.db)
        prefix = "bench" + uuid.uuid4().hex[:8]
        api = Node("api", schema.url, a.bus, prefix, work)
        nodes: list[Node] = []
        try:
            api.wait_ready()
            nodes = [Node("worker", schema.url, a.bus, prefix, work) for _ in range(workers)]
            shares = wait_split(nodes)
            payloads = bodies("native", n // 1000, 1000, 500, uuid.uuid4().hex[:6])
            c0 = [cpu_s(x.proc.pid) for x in nodes]
            t0 = time.perf_counter()
            asyncio.run(post_all(api.url, "/api/v1/events", payloads, 4))
            posted = time.perf_counter() - t0
            deadline = time.monotonic() + 600
            while schema.count("SELECT count(*) FROM events") < n and time.monotonic() < deadline:
                time.sleep(0.1)
            wall = time.perf_counter() - t0
            stored = schema.count("SELECT count(*) FROM events")
            cpu = [cpu_s(x.proc.pid) - c for x, c in zip(nodes, c0)]
            rows.append({"workers": workers, "partitions": [len(p) for p in shares], "events": n,
                         "stored": stored, "posted_s": round(posted, 1), "wall_s": round(wall, 1),
                         "evaluated_events_per_s": round(stored / wall),
                         "worker_cpu_s": [round(c, 1) for c in cpu],
                         "worker_cpu_us_per_event": round(sum(cpu) / max(1, stored) * 1e6)})
            print(f"  {workers} worker(s) (partitions {[len(p) for p in shares]}): {stored:,} events stored "
                  f"and evaluated in {wall:.1f} s = {stored / wall:,.0f} events/s (posting took {posted:.1f} "
                  f"s); workers' CPU {[round(c, 1) for c in cpu]} s = {sum(cpu) / max(1, stored) * 1e6:.0f} "
                  f"µs an event; load average {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            for x in [api, *nodes]:
                x.stop()
            asyncio.run(drop_stream(a.bus, prefix))
            schema.drop()
    return rows


def phase_takeover(a, work: Path) -> list[dict]:
    """For each fleet size: the fleet's pipelines get runs through 1 worker; a 2nd joins (both restart their
    writers on their half: the reload), then is SIGKILLed: timed until the survivor owns all 16 partitions
    and its writer has reloaded every pipeline's state (checkpoint + replay)."""
    rows = []
    sizes = [240, 2000] if a.quick else [int(x) for x in a.takeover_pipelines.split(",")]
    for pipelines in sizes:
        schema = Schema(a.db)
        prefix = "bench" + uuid.uuid4().hex[:8]
        api = Node("api", schema.url, a.bus, prefix, work)
        nodes: list[Node] = []
        try:
            api.wait_ready()
            first = Node("worker", schema.url, a.bus, prefix, work)
            nodes.append(first)
            wait_split([first])
            per = 1000
            n = max(per, pipelines * 2 // per * per)  # two runs a pipeline
            fleet = bodies("native", n // per, per, pipelines, "fleet")
            asyncio.run(post_all(api.url, "/api/v1/events", fleet, 4))
            deadline = time.monotonic() + 900
            while schema.count("SELECT count(*) FROM events") < n and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(6)  # one checkpoint (every 5 s) after the last event
            second = Node("worker", schema.url, a.bus, prefix, work)
            nodes.append(second)
            t0 = time.monotonic()  # from the 2nd's process start (its start-up included)
            wait_split(nodes)
            settle = time.monotonic() - t0
            while (len(restarts(second)) < 1 or len(restarts(first)) < 2) and time.monotonic() - t0 < 300:
                time.sleep(0.05)
            joined = {"first": restarts(first)[-1], "second": restarts(second)[-1]}
            c0 = cpu_s(first.proc.pid)
            before = len(restarts(first))
            second.proc.kill()
            t1 = time.monotonic()
            while owned(first) != set(range(16)) and time.monotonic() - t1 < 300:
                time.sleep(0.05)
            takeover = time.monotonic() - t1
            while len(restarts(first)) == before and time.monotonic() - t1 < 300:
                time.sleep(0.05)  # /readyz says "leading" a moment before the restart's log line
            reload_s = restarts(first)[-1]
            cpu = cpu_s(first.proc.pid) - c0
            rows.append({"pipelines": schema.count("SELECT count(*) FROM pipelines"), "events": n,
                         "second_joined_settled_s": round(settle, 1), "restart_on_half_s": joined,
                         "takeover_s": round(takeover, 1), "survivor_reload_s": reload_s,
                         "survivor_cpu_s": round(cpu, 1)})
            print(f"  {pipelines:,} pipelines: a 2nd worker started, shares settled {settle:.1f} s later "
                  f"(writer restarts on 8 partitions: {joined['first']} s and {joined['second']} s); after "
                  f"its SIGKILL the survivor owned all 16 in {takeover:.1f} s, its writer reloaded in "
                  f"{reload_s} s ({cpu:.1f} s CPU); load average {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            for x in [api, *nodes]:
                x.stop()
            asyncio.run(drop_stream(a.bus, prefix))
            schema.drop()
    return rows


def phase_latency(a, work: Path) -> dict:
    """Each sample's hops, all on this machine's wall clock (time.time()): POST sent → 200 (api ack) → the
    worker pulled the message (log) → the commit that wrote the notification published the wake-up (worker
    commit, the writer's queue included) → the dispatcher got the wake-up (wake) → the webhook arrived
    (dispatcher: claim, render, POST). The nodes log their times on the `pipemon.trace` logger. The log hop
    starts at JetStream's own timestamp of the message (the server's clock: the same machine)."""
    arrived: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        for alert in body.get("alerts", []):
            arrived.setdefault(alert.get("labels", {}).get("pipeline", ""), time.time())
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
        nodes = [Node(r, schema.url, a.bus, prefix, work, cfg, traced=True)
                 for r in ("worker", "dispatcher", "api")]
        samples: list[dict] = []
        missed = 0
        try:
            await asyncio.to_thread(nodes[0].wait_ready, "worker")
            await asyncio.to_thread(nodes[1].wait_ready, "dispatcher")
            await asyncio.to_thread(nodes[2].wait_ready)
            cpu0 = [cpu_s(x.proc.pid) for x in nodes]
            async with aiohttp.ClientSession() as s:
                for i in range(20 if a.quick else a.samples):
                    name = f"lat_{uuid.uuid4().hex[:8]}"
                    now = datetime.now(timezone.utc)
                    ev = ol_event("bench", name, str(uuid.uuid4()), now, 1)
                    ev["eventType"] = "FAIL"
                    t0 = time.time()
                    url = nodes[2].url + "/api/v1/lineage"
                    async with s.post(url, data=json.dumps(ev), headers=HDR) as r:
                        assert r.status == 200, await r.text()
                    acked = time.time()
                    key = f"bench/{name}"
                    while key not in arrived and time.time() - t0 < 5:
                        await asyncio.sleep(0.0005)
                    if key in arrived:
                        samples.append({"pipeline": key, "sent": t0, "acked": acked, "arrived": arrived[key]})
                    else:
                        missed += 1
                    await asyncio.sleep(0.05)
            cpu = {x.role: round((cpu_s(x.proc.pid) - c) / max(1, len(samples) + missed) * 1000, 1)
                   for x, c in zip(nodes, cpu0)}
        finally:
            for x in nodes:
                await asyncio.to_thread(x.stop)
            await drop_stream(a.bus, prefix)
            schema.drop()
            await runner.cleanup()
        hops = hop_times(samples, nodes[0].log_path, nodes[1].log_path)
        lat = sorted((x["arrived"] - x["sent"]) * 1000 for x in samples)
        out = {"samples": len(lat), "missed": missed, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
               "hops_ms": hops, "cpu_ms_per_sample": cpu}
        print(f"  FAIL → webhook: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms ({len(lat)} samples, "
              f"{missed} missed)", flush=True)
        print("    CPU per sample (utime+stime, the nodes' idle work included): "
              + ", ".join(f"{r} {ms} ms" for r, ms in cpu.items()), flush=True)
        for hop, v in hops.items():  # (nothing traced: the nodes run a pipemon without the trace lines)
            print(f"    {hop:<46} p50 {v['p50_ms'] or '-':>7} ms   p99 {v['p99_ms'] or '-':>7} ms   "
                  f"({v['n']} traced)", flush=True)
        return out
    return asyncio.run(run())


def pct(xs: list[float], q: float) -> float | None:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))] if q != 0.5 else statistics.median(xs), 1) \
        if xs else None


def hop_times(samples: list[dict], worker_log: Path, dispatcher_log: Path) -> dict:
    """Join each sample with the worker's and the dispatcher's trace lines (pipeline, then wall time)."""
    def fields(line: str) -> dict[str, str]:
        return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)

    messages: dict[str, dict[str, str]] = {}
    wakes: list[tuple[str, float]] = []
    for line in worker_log.read_text(errors="replace").splitlines():
        if "pipemon.trace: message " in line:
            f = fields(line.split("pipemon.trace: ", 1)[1])
            for p in f.get("pipelines", "").split(","):
                messages.setdefault(p, f)
        elif "pipemon.trace: wake " in line:
            f = fields(line.split("pipemon.trace: ", 1)[1])
            wakes.append((f["groups"], float(f["at"])))
    woken = sorted(float(fields(line.split("pipemon.trace: ", 1)[1])["at"])
                   for line in dispatcher_log.read_text(errors="replace").splitlines()
                   if "pipemon.trace: woken " in line)
    names = ["api ack: POST → 200 (every PubAck in)", "log: stored → pulled by the worker",
             "worker: pulled → committed, wake-up published", "wake-up: published → dispatcher woken",
             "dispatcher: woken → webhook arrived"]
    out: dict[str, list[float]] = {n: [] for n in names}
    for x in samples:
        out[names[0]].append((x["acked"] - x["sent"]) * 1000)
        m = messages.get(x["pipeline"])
        wake = next((at for groups, at in wakes if x["pipeline"] in groups), None)
        if m is None or wake is None:
            continue
        out[names[1]].append((float(m["pulled"]) - float(m["stored"])) * 1000)
        out[names[2]].append((wake - float(m["pulled"])) * 1000)
        got = next((w for w in woken if w >= wake), None)
        if got is not None:
            out[names[3]].append((got - wake) * 1000)
            out[names[4]].append((x["arrived"] - got) * 1000)
    return {n: {"n": len(v), "p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99)} for n, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=os.environ.get("PIPEMON_TEST_POSTGRES_URL",
                                                   "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--bus", default=os.environ.get("PIPEMON_TEST_NATS_URL", "nats://127.0.0.1:4222"))
    ap.add_argument("--e2e-events", type=int, default=50_000)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--takeover-pipelines", default="240,20000",
                    help="fleet sizes for the takeover phase (240: the demo fleet's size)")
    ap.add_argument("--phases", default="api,e2e,takeover,latency")
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
        print("2. end to end: events posted to settled workers, 1 then 2 (both active)", flush=True)
        result["e2e"] = phase_e2e(a, work)
    if "takeover" in phases:
        print("2b. a worker joins, then dies: rebalance, takeover, the survivor's reload", flush=True)
        result["takeover"] = phase_takeover(a, work)
    if "latency" in phases:
        print("3. FAIL → webhook through api → log → worker → outbox → dispatcher", flush=True)
        result["latency"] = phase_latency(a, work)
    print(f"load average after: {os.getloadavg()}", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
