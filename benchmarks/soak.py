#!/usr/bin/env python3
"""Soak: a steady OpenLineage load on one `pipemon serve` (SQLite, fresh file) for N minutes.

    python benchmarks/soak.py                            # 300 events/s over 2,000 pipelines, 30 minutes
    python benchmarks/soak.py --minutes 5 --rate 300     # shorter

The load: runs of --pipelines pipelines, each a START then (a few seconds later) a COMPLETE, or a FAIL for
--fail-pct of them, as single OpenLineage POSTs at --rate events/s (open loop: sent on schedule, whatever the
answers), with lineage: pipeline i reads the dataset pipeline i-1 writes, in chains of 10. Meanwhile, as a
Prometheus and a Grafana would: GET /metrics (gzip) every 15 s, and every second a dashboard's reads
(/api/v1/summary, failing pipelines, one pipeline, open alerts). A webhook receiver in this process takes the
notifications.

A POST that fails or times out is retried (the same event: stored once), as a producer with retries does.
Each minute it prints: the server's RSS, ingest p50/p99, read p50/p99, server CPU (% of one core), errors, the
/metrics time and the worst event-loop lag the server reported, next to the worst lag of an idle control
server started alongside (same code, no load: on a shared machine its lag is the noise floor). At the end: events stored (counted in the
database) = events acknowledged (200 answers), or it says by how many they differ.
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import JSON, Receiver, Server, log, ol, pct


def lineage_event(i: int, run_id: str, etype: str, when: float, error: str | None = None) -> bytes:
    """`ol()` plus lineage: soak/p{i} reads the output of soak/p{i-1} (chains of 10)."""
    body = ol("soak", f"p{i:05d}", run_id, etype, when, rows=1000 + i % 97 if etype == "COMPLETE" else None,
              error=error)
    if i % 10 == 0:
        return body
    upstream = f'"inputs": [{{"namespace": "s3://soak", "name": "ds{i - 1:05d}"}}]'.encode()
    out = f'"outputs": [{{"namespace": "s3://soak", "name": "ds{i:05d}"}}]'.encode()
    body = body.replace(b'"inputs": []', upstream)
    return body.replace(b'"outputs": []', out) if b'"outputs": []' in body else body


ALL_ERRORS: dict[str, int] = {}


class Minute:
    def __init__(self) -> None:
        self.ingest: list[float] = []
        self.reads: list[float] = []
        self.errors = 0
        self.acked = 0
        self.scrapes: list[float] = []
        self.lag = 0.0
        self.control_lag = 0.0
        self.gc = 0.0
        self.why: dict[str, int] = {}

    def error(self, why: str) -> None:
        self.errors += 1
        self.why[why] = self.why.get(why, 0) + 1
        ALL_ERRORS[why] = ALL_ERRORS.get(why, 0) + 1


async def soak(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="pipemon-soak-"))
    rec = Receiver()
    await rec.start()
    server = Server(work, rec.port)
    (work / "control").mkdir()
    control = Server(work / "control", rec.port)  # idle: its loop lag is the machine's noise floor
    cur = Minute()
    acked = sent = 0
    stop_at = 0.0
    rows = []
    try:
        conn = aiohttp.TCPConnector(limit=128)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), connector=conn) as s:
            await server.ready(s)
            await control.ready(s)
            base = server.base
            rnd = random.Random(7)
            started: set[int] = set()
            stop_at = time.monotonic() + args.minutes * 60

            async def post(body: bytes) -> None:
                """Send until acknowledged, as a client with retries does (the same event again: the server
                stores it once). Each failed try counts as an error."""
                nonlocal acked
                t0 = time.perf_counter()
                for attempt in range(8):
                    try:
                        async with s.post(base + "/api/v1/lineage", data=body, headers=JSON) as r:
                            await r.read()
                        status = str(r.status)
                    except (aiohttp.ClientError, TimeoutError) as e:
                        status = type(e).__name__
                    if status == "200":
                        break
                    cur.error(f"POST lineage {status}")
                    await asyncio.sleep(min(5.0, 0.2 * 2 ** attempt))
                else:
                    return
                cur.ingest.append(time.perf_counter() - t0)  # retries included: what the producer waited
                acked += 1
                cur.acked += 1

            async def load() -> None:
                """Open loop: event k is sent at t0 + k / rate. A run's end follows its start by 2-8 s."""
                nonlocal sent
                ends: list[tuple[float, bytes]] = []
                t0 = time.monotonic()
                k = 0
                tasks: set[asyncio.Task] = set()
                while time.monotonic() < stop_at:
                    due = t0 + k / args.rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    now = time.time()
                    ends.sort(key=lambda e: e[0])
                    if ends and ends[0][0] <= now:
                        body = ends.pop(0)[1]
                    else:
                        i = rnd.randrange(args.pipelines)
                        started.add(i)
                        rid = str(uuid.uuid4())
                        body = lineage_event(i, rid, "START", now)
                        end = now + rnd.uniform(2, 8)
                        if rnd.random() < args.fail_pct / 100:
                            ends.append((end, lineage_event(i, rid, "FAIL", end, error="soak failure")))
                        else:
                            ends.append((end, lineage_event(i, rid, "COMPLETE", end)))
                    t = asyncio.create_task(post(body))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                    sent += 1
                    k += 1
                await asyncio.gather(*tasks)

            async def timed_get(path: str, headers: dict | None = None) -> bytes | None:
                t0 = time.perf_counter()
                try:
                    async with s.get(base + path, headers=headers or {}, auto_decompress=False) as r:
                        data = await r.read()
                        status = str(r.status)
                        gz = r.headers.get("Content-Encoding") == "gzip"
                except (TimeoutError, aiohttp.ClientError) as e:
                    status, data, gz = type(e).__name__, b"", False
                if status != "200":
                    cur.error(f"GET {path.split('?')[0].split('%2F')[0]} {status}")
                    return None
                if path == "/metrics":
                    cur.scrapes.append(time.perf_counter() - t0)
                    return gzip.decompress(data) if gz else data
                cur.reads.append(time.perf_counter() - t0)
                return data

            async def scraper() -> None:
                while time.monotonic() < stop_at:
                    text = await timed_get("/metrics", {"Accept-Encoding": "gzip"})
                    for line in (text or b"").splitlines():
                        if line.startswith(b"pipemon_event_loop_lag_seconds "):
                            cur.lag = max(cur.lag, float(line.split()[1]))
                        if line.startswith(b"pipemon_gc_pause_seconds "):
                            cur.gc = max(cur.gc, float(line.split()[1]))
                    async with s.get(control.base + "/metrics") as r:
                        for line in (await r.read()).splitlines():
                            if line.startswith(b"pipemon_event_loop_lag_seconds "):
                                cur.control_lag = max(cur.control_lag, float(line.split()[1]))
                    await asyncio.sleep(15)

            async def dashboard() -> None:
                known: list[int] = []
                while time.monotonic() < stop_at:
                    await asyncio.sleep(1)
                    reads = [timed_get("/api/v1/summary"), timed_get("/api/v1/pipelines?state=failing&limit=50"),
                             timed_get("/api/v1/alerts?state=firing&limit=50")]
                    if known:  # a pipeline whose START was sent a second ago or more
                        reads.append(timed_get(f"/api/v1/pipelines/soak%2Fp{rnd.choice(known):05d}"))
                    await asyncio.gather(*reads)
                    known = list(started)

            async def reporter() -> None:
                nonlocal cur
                minute = 0
                c0 = server.cpu()
                t0 = time.monotonic()
                while time.monotonic() < stop_at + 1:
                    await asyncio.sleep(min(60.0, max(0.5, stop_at + 1 - time.monotonic())))
                    m, cur = cur, Minute()
                    c1, t1 = server.cpu(), time.monotonic()
                    minute += 1
                    label = str(minute) if t1 - t0 > 50 else "end"  # the last seconds, the load drained
                    ms = lambda xs, q: pct(xs, q) * 1000 if xs else float("nan")
                    row = {"minute": label, "rss_mib": server.rss() / 1024, "acked": m.acked,
                           "ingest_p50": ms(m.ingest, .5), "ingest_p99": ms(m.ingest, .99),
                           "read_p50": ms(m.reads, .5), "read_p99": ms(m.reads, .99),
                           "cpu_pct": (c1 - c0) / (t1 - t0) * 100, "errors": m.errors,
                           "scrape_ms": statistics.median(m.scrapes) * 1000 if m.scrapes else float("nan"),
                           "lag_ms": m.lag * 1000, "control_ms": m.control_lag * 1000, "gc_ms": m.gc * 1000,
                           "why": m.why,
                           "load": os.getloadavg()[0]}
                    c0, t0 = c1, t1
                    rows.append(row)
                    print("| {minute} | {rss_mib:.0f} | {acked:,} | {ingest_p50:.1f} / {ingest_p99:.1f} | "
                          "{read_p50:.1f} / {read_p99:.1f} | {cpu_pct:.0f} | {errors} | {scrape_ms:.0f} | "
                          "{lag_ms:.0f} ({control_ms:.0f}) | {gc_ms:.0f} | {load:.1f} |".format(**row), flush=True)

            print(f"\n### soak: {args.rate:g} events/s over {args.pipelines:,} pipelines, {args.fail_pct:g} % "
                  f"failures, lineage; /metrics every 15 s, dashboard reads every 1 s; {args.minutes:g} min; "
                  f"load average {os.getloadavg()[0]:.2f} at the start, {os.cpu_count()} cores\n")
            print("| minute | RSS MiB | events acked | ingest p50 / p99 ms | read p50 / p99 ms | server CPU % | "
                  "errors | /metrics ms | worst loop lag ms (idle control) | worst GC pause ms | load average |")
            print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
            await asyncio.gather(load(), scraper(), dashboard(), reporter())
            await asyncio.sleep(2)  # the writer's last flush
    finally:
        server.stop()
        control.stop()
        await rec.stop()
    try:
        with sqlite3.connect(work / "pipemon.db") as db:
            stored = db.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total_errors = sum(ALL_ERRORS.values())
    why = ALL_ERRORS
    print(f"\nsent {sent:,} events, acknowledged {acked:,}, stored {stored:,}: "
          + ("stored = acknowledged" if stored == acked else f"DIFFER by {stored - acked:,}")
          + f"; {total_errors} errors {why or ''}; load average {os.getloadavg()[0]:.2f} at the end")
    return 0 if stored == acked else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=300.0, help="events per second")
    ap.add_argument("--pipelines", type=int, default=2000)
    ap.add_argument("--fail-pct", type=float, default=3.0, help="percent of runs that fail")
    args = ap.parse_args(argv)
    log(f"soak for {args.minutes:g} min")
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
