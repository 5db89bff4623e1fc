#!/usr/bin/env python3
"""How each cost grows with the fleet: one `pipemon serve` (SQLite, fresh file) per fleet size.

    python benchmarks/scale.py                         # 200, 2,000, 20,000 and 100,000 pipelines
    python benchmarks/scale.py --sizes 200,2000        # chosen sizes
    python benchmarks/scale.py --quick                 # 200 and 2,000, fewer samples (a smoke run)

For each size N, in order, against the same server:
  populate   N pipelines, each a START and a COMPLETE (native batches of 5,000 events): batched ingest rate
             and server CPU per 1,000 events
  burst      the top of the hour: min(N, 20,000) OpenLineage STARTs (cron `0 * * * *` pipelines), one per
             POST, 32 connections; all must be acknowledged; p50/p99 of each POST
  single     --singles OpenLineage COMPLETEs, one per POST, 32 connections: rate and server CPU per 1,000
  notify     --samples sequential FAILs, each of a new pipeline (a new alert group) in the fleet, timed from
             the POST to the webhook request arriving at a receiver in this process (group_by [pipeline],
             group_wait 0s): p50/p99
  metrics    GET /metrics with Accept-Encoding: gzip, the first (renders every pipeline) and the median of
             5 more: time, size sent and size uncompressed, and the worst event-loop lag the server saw
             during those 5 (each scrape reports the worst since the previous one)
  list       GET /api/v1/pipelines (a page of 100) 100 times: p95
  memory     server RSS after start-up (empty), and after all of the above: (RSS - empty) / N per pipeline
Server CPU is utime+stime from /proc; the load runs in this process (aiohttp), so on a small machine its
own CPU competes with the server's: the rate figures are a floor, the CPU per event is the server's own.
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python"
SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
JSON = {"Content-Type": "application/json"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))] if s else float("nan")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def ol(ns: str, name: str, run_id: str, etype: str, when: float, rows: int | None = None,
       error: str | None = None) -> bytes:
    run_facets: dict = {}
    if error:
        run_facets["errorMessage"] = {"_producer": PRODUCER, "_schemaURL": "x", "message": error,
                                      "programmingLanguage": "python"}
    outputs = []
    if rows is not None:
        outputs = [{"namespace": "s3://bench", "name": f"{ns}/{name}/out", "facets": {}, "outputFacets": {
            "outputStatistics": {"_producer": PRODUCER, "_schemaURL": "x", "rowCount": rows, "size": rows * 64}}}]
    return json.dumps({"eventTime": iso(when), "eventType": etype, "producer": PRODUCER, "schemaURL": SCHEMA,
                       "run": {"runId": run_id, "facets": run_facets},
                       "job": {"namespace": ns, "name": name, "facets": {}}, "inputs": [],
                       "outputs": outputs}).encode()


class Receiver:
    """The webhook receiver, in this process: arrival times share the POSTs' perf_counter clock."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self.port = free_port()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, HOST, self.port).start()

    async def handle(self, request: web.Request) -> web.Response:
        t = time.perf_counter()
        body = await request.json()
        for a in body.get("alerts", []):
            p = a.get("labels", {}).get("pipeline") or a.get("pipeline", "")
            self.arrived.setdefault(p, t)
            if p in self.waiters:
                self.waiters[p].set()
        return web.Response(text="ok")

    async def stop(self) -> None:
        await self.runner.cleanup()


class Server:
    def __init__(self, workdir: Path, receiver_port: int) -> None:
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        cfg = workdir / "pipemon.yaml"
        cfg.write_text(f"""receivers:
  - name: hook
    webhook: {{url: "http://{HOST}:{receiver_port}/hook"}}
route:
  receiver: hook
  group_by: [pipeline]
  group_wait: 0s
""")
        self.log_path = workdir / "server.log"
        argv = [sys.executable, "-m", "pipemon", "serve", "--db", f"sqlite:///{workdir / 'pipemon.db'}",
                "--port", str(self.port), "--config", str(cfg)]
        with open(self.log_path, "wb") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          cwd=workdir, preexec_fn=_die_with_parent)

    async def ready(self, s: aiohttp.ClientSession, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"pipemon exited: {self.log_path.read_text()[-800:]}")
            try:
                async with s.get(self.base + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("pipemon did not start")

    def cpu(self) -> float:
        return cpu_s(self.popen.pid)

    def rss(self) -> int:
        return rss_kib(self.popen.pid)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


async def fire(s: aiohttp.ClientSession, url: str, bodies: list[bytes], conc: int) -> tuple[list[float], int, float]:
    """POST each body, `conc` at a time: latencies (s), errors, wall seconds."""
    lat: list[float] = []
    errors = 0
    it = iter(bodies)

    async def worker() -> None:
        nonlocal errors
        for body in it:
            t0 = time.perf_counter()
            try:
                async with s.post(url, data=body, headers=JSON) as r:
                    await r.read()
                    ok = r.status == 200
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            lat.append(time.perf_counter() - t0)
            errors += not ok

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return lat, errors, time.perf_counter() - t0


async def one_size(n: int, args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"pipemon-scale-{n}-"))
    rec = Receiver()
    await rec.start()
    server = Server(work, rec.port)
    out: dict = {"pipelines": n}
    try:
        timeout = aiohttp.ClientTimeout(total=120)
        conn = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(timeout=timeout, connector=conn) as s:
            await server.ready(s)
            await asyncio.sleep(1.0)
            rss0 = server.rss()
            out["rss_empty_mib"] = rss0 / 1024
            base = time.time() - 3 * 3600
            ns = "scale"

            # populate: batched native events
            log(f"{n}: populate")
            events = []
            for i in range(n):
                t = base + (i % 3600)
                events += [{"namespace": ns, "name": f"p{i:06d}", "run_id": f"r0-{i}", "type": "START",
                            "event_time": iso(t), "team": f"team{i % 50}"},
                           {"namespace": ns, "name": f"p{i:06d}", "run_id": f"r0-{i}", "type": "COMPLETE",
                            "event_time": iso(t + 60), "metrics": {"rows": 1000 + i}}]
            batches = [json.dumps(events[i:i + 5000]).encode() for i in range(0, len(events), 5000)]
            c0 = server.cpu()
            _, errs, wall = await fire(s, server.base + "/api/v1/events", batches, 4)
            out["batch_rate"] = len(events) / wall
            out["batch_cpu_ms_per_1k"] = (server.cpu() - c0) * 1000 / len(events) * 1000
            out["batch_errors"] = errs

            # burst: the top of the hour
            k = min(n, args.burst)
            log(f"{n}: burst of {k} STARTs")
            hour = time.time()
            bodies = [ol(ns, f"p{i:06d}", str(uuid.uuid4()), "START", hour) for i in range(k)]
            lat, errs, wall = await fire(s, server.base + "/api/v1/lineage", bodies, 32)
            out.update(burst=k, burst_p50_ms=statistics.median(lat) * 1000, burst_p99_ms=pct(lat, .99) * 1000,
                       burst_acked=k - errs)

            # single events
            log(f"{n}: {args.singles} single COMPLETEs")
            bodies = [ol(ns, f"p{i % n:06d}", str(uuid.uuid4()), "COMPLETE", hour + 1, rows=100 + i)
                      for i in range(args.singles)]
            c0 = server.cpu()
            lat, errs, wall = await fire(s, server.base + "/api/v1/lineage", bodies, 32)
            out.update(single_rate=args.singles / wall, single_p50_ms=statistics.median(lat) * 1000,
                       single_p99_ms=pct(lat, .99) * 1000, single_errors=errs,
                       single_cpu_ms_per_1k=(server.cpu() - c0) * 1000 / args.singles * 1000)

            # FAIL -> webhook
            log(f"{n}: {args.samples} FAIL -> webhook samples")
            notify: list[float] = []
            missed = 0
            for j in range(args.samples + 5):
                key = f"{ns}/fail{j:04d}"  # a new pipeline: a new alert group, as side_by_side.py measures
                rec.waiters[key] = ev = asyncio.Event()
                t0 = time.perf_counter()
                async with s.post(server.base + "/api/v1/lineage", headers=JSON,
                                  data=ol(ns, f"fail{j:04d}", str(uuid.uuid4()), "FAIL", time.time(),
                                          error="boom")) as r:
                    await r.read()
                try:
                    await asyncio.wait_for(ev.wait(), 5)
                    if j >= 5:
                        notify.append(rec.arrived[key] - t0)
                except asyncio.TimeoutError:
                    missed += 1
                await asyncio.sleep(0.01)
            out.update(notify_samples=len(notify), notify_missed=missed,
                       notify_p50_ms=statistics.median(notify) * 1000 if notify else float("nan"),
                       notify_p99_ms=pct(notify, .99) * 1000)

            # /metrics
            log(f"{n}: /metrics")
            scrapes = []
            lag = 0.0
            for k in range(6):
                t0 = time.perf_counter()
                async with s.get(server.base + "/metrics", headers={"Accept-Encoding": "gzip"},
                                 auto_decompress=False) as r:
                    raw = await r.read()
                scrapes.append(time.perf_counter() - t0)
                text = gzip.decompress(raw) if r.headers.get("Content-Encoding") == "gzip" else raw
                for line in text.splitlines():
                    if k and line.startswith(b"pipemon_event_loop_lag_seconds "):  # lag while scraping
                        lag = max(lag, float(line.split()[1]))
                await asyncio.sleep(0.2)
            out.update(metrics_first_ms=scrapes[0] * 1000, metrics_ms=statistics.median(scrapes[1:]) * 1000,
                       metrics_sent_kb=len(raw) / 1000, metrics_text_kb=len(text) / 1000,
                       loop_lag_ms=lag * 1000)

            # GET /api/v1/pipelines
            log(f"{n}: list")
            lat = []
            for _ in range(100):
                t0 = time.perf_counter()
                async with s.get(server.base + "/api/v1/pipelines") as r:
                    await r.read()
                lat.append(time.perf_counter() - t0)
            out["list_p95_ms"] = pct(lat, .95) * 1000

            await asyncio.sleep(1.0)
            rss = server.rss()
            out.update(rss_mib=rss / 1024, rss_kib_per_pipeline=(rss - rss0) / n)
    finally:
        server.stop()
        await rec.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


COLUMNS = [
    ("pipelines", "pipelines", "{:,}"),
    ("batch_rate", "batched ev/s", "{:,.0f}"),
    ("batch_cpu_ms_per_1k", "CPU ms/1k (batched)", "{:.0f}"),
    ("single_rate", "single ev/s", "{:,.0f}"),
    ("single_cpu_ms_per_1k", "CPU ms/1k (single)", "{:.0f}"),
    ("burst_p99_ms", "burst p99 ms (acked)", "{:.0f}"),
    ("notify_p50_ms", "FAIL→webhook p50 ms", "{:.1f}"),
    ("notify_p99_ms", "p99 ms", "{:.1f}"),
    ("metrics_ms", "/metrics ms (first)", "{:.0f}"),
    ("metrics_sent_kb", "/metrics KB gzip (text)", "{:,.0f}"),
    ("loop_lag_ms", "worst loop lag ms", "{:.0f}"),
    ("list_p95_ms", "list p95 ms", "{:.1f}"),
    ("rss_kib_per_pipeline", "KiB/pipeline (RSS MiB)", "{:.1f}"),
]


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = []
        for key, _, f in COLUMNS:
            cell = f.format(r[key])
            if key == "burst_p99_ms":
                cell += f" ({r['burst_acked']:,}/{r['burst']:,})"
            elif key == "metrics_ms":
                cell += f" ({r['metrics_first_ms']:.0f})"
            elif key == "metrics_sent_kb":
                cell += f" ({r['metrics_text_kb']:,.0f})"
            elif key == "rss_kib_per_pipeline":
                cell += f" ({r['rss_mib']:.0f})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict]:
    rows = []
    for n in args.sizes:
        t0 = time.monotonic()
        load0 = os.getloadavg()[0]
        row = await one_size(n, args)
        row["load"] = load0
        rows.append(row)
        log(f"{n}: done in {time.monotonic() - t0:.0f} s: {json.dumps(row)}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200,2000,20000,100000", help="comma-separated fleet sizes")
    ap.add_argument("--quick", action="store_true", help="200 and 2,000 pipelines, fewer samples")
    ap.add_argument("--singles", type=int, default=4000, help="single events per size")
    ap.add_argument("--samples", type=int, default=200, help="FAIL -> webhook samples per size")
    ap.add_argument("--burst", type=int, default=20_000, help="top-of-the-hour STARTs (at most one a pipeline)")
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args(argv)
    args.sizes = [int(x.replace("_", "")) for x in args.sizes.split(",")]
    if args.quick:
        args.sizes = [x for x in args.sizes if x <= 2000] or [200, 2000]
        args.singles, args.samples, args.burst = 1000, 50, 2000
    rows = asyncio.run(main_async(args))
    print(f"\n### pipemon at scale: one process, SQLite; load average {os.getloadavg()[0]:.2f} at the end, "
          f"{os.cpu_count()} cores\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    base = rows[0]
    for r in rows[1:]:
        print(f"\n{r['pipelines']:,} vs {base['pipelines']:,}: CPU per single event x"
              f"{r['single_cpu_ms_per_1k'] / base['single_cpu_ms_per_1k']:.2f}, notification p99 x"
              f"{r['notify_p99_ms'] / base['notify_p99_ms']:.2f} (goal at 100,000: within 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
