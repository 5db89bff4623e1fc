#!/usr/bin/env python3
"""Delivery isolation: one receiver stalls 10 s on every request (past the webhook's 10 s timeout, so every
attempt times out and is retried), another is healthy. How long do the healthy receiver's notifications
take? Goal: p99 under 1 s.

Starts `pipemon serve` (production settings) on a fresh SQLite file (or --db) with two webhook receivers
served by this process, routes every alert to both, and sends --alerts FAIL events for new pipelines at
--rate per second. The delay of a notification is from the POST of its FAIL event to the webhook arriving
at the healthy receiver (so it includes ingest and alerting, an upper bound on the delivery's own delay).

    python benchmarks/delivery_isolation.py [--alerts 60] [--rate 4] [--stall 10] [--db URL]

Run it against another checkout's code with PYTHONPATH=/path/to/src (the server inherits it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receivers:
    """/ok records each notification's arrival; /stall holds every request `stall` seconds."""

    def __init__(self, stall: float) -> None:
        self.arrived: dict[str, float] = {}   # pipeline -> first arrival (perf_counter)
        self.stalled = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if self.path == "/stall":
                    with outer.lock:
                        outer.stalled += 1
                    time.sleep(stall)
                else:
                    t = time.perf_counter()
                    if body["pipemon"]["action"] == "trigger":
                        with outer.lock:
                            outer.arrived.setdefault(body["alerts"][0]["labels"]["pipeline"], t)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


CONFIG = """
pipelines:
  - match: "bench/*"
    team: bench
receivers:
  - name: default
    webhook: {{url: "{url}/ok"}}
  - name: stalling
    webhook: {{url: "{url}/stall"}}
  - name: healthy
    webhook: {{url: "{url}/ok"}}
route:
  receiver: default
  group_by: [pipeline]
  group_wait: 0s
  routes:
    - matchers: ['team="bench"']
      receiver: stalling
      continue: true
    - matchers: ['team="bench"']
      receiver: healthy
"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=60)
    ap.add_argument("--rate", type=float, default=4.0, help="FAIL events a second")
    ap.add_argument("--stall", type=float, default=10.0, help="seconds the stalling receiver holds a request")
    ap.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    args = ap.parse_args()

    rec = Receivers(args.stall)
    tmp = tempfile.mkdtemp(prefix="pipemon-bench-")
    cfg = os.path.join(tmp, "pipemon.yaml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(url=rec.url))
    db = args.db or f"sqlite:///{tmp}/pipemon.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(os.path.join(tmp, "server.log"), "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipemon", "serve", "--db", db, "--port", str(port),
                                 "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
    sent: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("pipemon serve did not start: " + Path(tmp, "server.log").read_text()[-2000:])
            time.sleep(0.05)
        run = f"{int(time.time())}"
        with httpx.Client(base_url=url, timeout=10) as c:
            t0 = time.perf_counter()
            for i in range(args.alerts):
                pipeline = f"bench/p{i}"
                now = time.time()
                sent[pipeline] = time.perf_counter()
                r = c.post("/api/v1/events", json=[
                    {"pipeline": pipeline, "run_id": f"{run}-{i}", "type": "START", "event_time": now - 60},
                    {"pipeline": pipeline, "run_id": f"{run}-{i}", "type": "FAIL", "event_time": now,
                     "error": "boom"}])
                r.raise_for_status()
                pause = t0 + (i + 1) / args.rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        wait_until = time.perf_counter() + 30
        while len(rec.arrived) < args.alerts and time.perf_counter() < wait_until:
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    delays = [rec.arrived[p] - sent[p] for p in sent if p in rec.arrived]
    missing = len(sent) - len(delays)
    print(f"alerts sent: {len(sent)} at {args.rate:g}/s; stalling receiver held {rec.stalled} request(s) "
          f"for {args.stall:g} s each")
    if delays:
        print(f"healthy receiver: {len(delays)} delivered, {missing} not within 30 s after the last; "
              f"delay p50 {statistics.median(delays) * 1000:.0f} ms, p99 {pct(delays, 99) * 1000:.0f} ms, "
              f"max {max(delays) * 1000:.0f} ms")
    else:
        print(f"healthy receiver: nothing delivered ({missing} missing)")
    ok = not missing and delays and pct(delays, 99) < 1.0
    print(f"goal (healthy p99 < 1 s, nothing missing): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
