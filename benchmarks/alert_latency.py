#!/usr/bin/env python3
"""Alert latency: from a FAIL event accepted by the live service to the webhook request arriving at the
receiver, with `group_wait: 0s`, under a steady background load of 200 events/s.

Starts `pipemon serve` on a fresh SQLite file (or --db) with one webhook receiver in this process,
runs the background load from a separate process, and takes --samples sequential samples: each POSTs
an OpenLineage FAIL for a new pipeline and times until the webhook carrying that pipeline arrives.
Goal: p50 under 20 ms and p99 under 100 ms.

    python benchmarks/alert_latency.py [--samples 200] [--rate 200] [--db URL]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

import httpx
from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def background(url: str, rate: float, stop_at: float) -> None:
    """Native COMPLETE events for 200 pipelines at `rate` per second, in batches of 10 every 50 ms."""
    with httpx.Client(timeout=10) as c:
        n = 0
        t0 = time.perf_counter()
        while time.time() < stop_at:
            now = datetime.now(timezone.utc).isoformat()
            body = [{"namespace": "bg", "name": f"p{(n + i) % 200}", "run_id": str(uuid.uuid4()), "type": "COMPLETE",
                     "event_time": now, "duration_s": 30, "metrics": {"rows": 1000}} for i in range(10)]
            try:
                c.post(url + "/api/v1/events", json=body)
            except httpx.HTTPError:
                pass
            n += 10
            sleep = t0 + n / rate - time.perf_counter()
            if sleep > 0:
                time.sleep(sleep)


def ol_fail(name: str) -> bytes:
    now = datetime.now(timezone.utc).isoformat()
    return json.dumps({
        "eventTime": now, "eventType": "FAIL", "producer": "https://example.com/bench", "schemaURL":
        "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4()), "facets": {"errorMessage": {
            "_producer": "x", "_schemaURL": "y", "message": "boom", "programmingLanguage": "python"}}},
        "job": {"namespace": "latency", "name": name, "facets": {}}, "inputs": [], "outputs": []}).encode()


async def main_async(a) -> dict:
    arrived: dict[str, float] = {}
    waiters: dict[str, asyncio.Event] = {}

    async def hook(request: web.Request) -> web.Response:
        t = time.perf_counter()
        body = await request.json()
        for al in body.get("alerts", []):
            name = al["labels"].get("pipeline", "")
            if name.startswith("latency/"):
                arrived.setdefault(name, t)
                if name in waiters:
                    waiters[name].set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    rport = free_port()
    await web.TCPSite(runner, "127.0.0.1", rport).start()
    work = tempfile.mkdtemp(prefix="pipemon-latency-")
    cfg = os.path.join(work, "pipemon.yaml")
    with open(cfg, "w") as f:
        f.write(f"""
receivers:
  - name: hook
    webhook: {{url: "http://127.0.0.1:{rport}/hook"}}
route:
  receiver: hook
  group_by: [pipeline]
  group_wait: 0s
""")
    port = free_port()
    db = a.db or f"sqlite:///{work}/pipemon.db"
    proc = subprocess.Popen([sys.executable, "-m", "pipemon", "serve", "--db", db, "--port", str(port),
                             "--config", cfg], stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "log"), "wb"))
    url = f"http://127.0.0.1:{port}"
    bg = None
    try:
        async with httpx.AsyncClient(timeout=10) as c:
            for _ in range(200):
                try:
                    if (await c.get(url + "/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            bg = multiprocessing.Process(target=background, args=(url, a.rate, time.time() + 3600), daemon=True)
            bg.start()
            await asyncio.sleep(2.0)  # the load is steady before measuring
            lat = []
            missed = 0
            for i in range(a.samples + 5):
                name = f"latency/p{i}-{uuid.uuid4().hex[:6]}"
                waiters[name] = asyncio.Event()
                t0 = time.perf_counter()
                r = await c.post(url + "/api/v1/lineage", content=ol_fail(name.split("/", 1)[1]),
                                 headers={"Content-Type": "application/json"})
                assert r.status_code == 200, r.text
                try:
                    await asyncio.wait_for(waiters[name].wait(), 5)
                except asyncio.TimeoutError:
                    missed += 1
                    continue
                if i >= 5:  # the first few warm up connections and caches
                    lat.append((arrived[name] - t0) * 1000)
                await asyncio.sleep(0.02)
    finally:
        if bg is not None:
            bg.terminate()
        proc.terminate()
        proc.wait(10)
        await runner.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, max(0, int(round(p * len(lat) + 0.5)) - 1))]  # noqa: E731 nearest rank
    return {"samples": len(lat), "missed": missed, "p50_ms": statistics.median(lat), "p95_ms": q(0.95),
            "p99_ms": q(0.99), "max_ms": lat[-1], "rate": a.rate}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--rate", type=float, default=200.0, help="background events per second")
    ap.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    a = ap.parse_args()
    res = asyncio.run(main_async(a))
    print(f"\n### alert latency: FAIL accepted -> webhook arrives, group_wait 0s, {res['rate']:g} events/s "
          f"background, {res['samples']} samples ({res['missed']} missed); load average {os.getloadavg()[0]:.2f}\n")
    print("| p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|")
    print(f"| {res['p50_ms']:.1f} | {res['p95_ms']:.1f} | {res['p99_ms']:.1f} | {res['max_ms']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
