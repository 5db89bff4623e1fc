"""What access control costs: resolving a request's token, reloading the tokens table, and the writer's
admission check (team ownership, new-pipeline quota) on the ingest path.

    python benchmarks/auth.py                 # SQLite in a temp dir
    python benchmarks/auth.py --tokens 5000 --events 40000

Prints µs per resolution (a hash and a dict lookup, no query), ms per full reload of the table (after a
create or revoke) and per check that finds it unchanged (what the keyring's thread does every 2 s), and
events/s through the inline writer in batches of 100, with no caller (auth off) and with a team's ingest
token (auth on), over as many pipelines.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import msgspec
from starlette.requests import Request

from pipemon.access import Caller, Role
from pipemon.api.keyring import AuthMode, Keyring
from pipemon.app import build
from pipemon.clock import FakeClock
from pipemon.ingest import native
from pipemon.store import tokens

T0 = 1_790_000_000.0


def request(secret: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/api/v1/events", "query_string": b"",
                    "headers": [(b"authorization", f"Bearer {secret}".encode())], "client": ("10.0.0.1", 1)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="database URL (default: a SQLite file in a temp dir)")
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--events", type=int, default=20_000, help="events per ingest run (batches of 100)")
    ap.add_argument("--pipelines", type=int, default=200)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    db = args.db or f"sqlite:///{Path(tmp.name) / 'auth.db'}"
    clock = FakeClock(T0)
    pm = build(db, clock=clock, deliver=False)
    try:
        secrets = []
        with pm.db.begin() as conn:
            for i in range(args.tokens):
                secrets.append(tokens.create(conn, name=f"t{i}", team=f"team{i % 50}", role=Role.INGEST,
                                             created_by="bench", now=T0)[1])
        ring = Keyring(pm.db, clock, AuthMode.ON)
        loads, checks = [], []
        for _ in range(20):
            ring._loaded = False  # a full read, as after a create or revoke
            t = time.perf_counter()
            ring.load()
            loads.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            ring.load()  # unchanged: the fingerprint query only
            checks.append((time.perf_counter() - t) * 1e3)
        reqs = [request(secrets[i % len(secrets)]) for i in range(20_000)]
        t = time.perf_counter()
        for r in reqs:
            ring.resolve(r)
        per_resolve = (time.perf_counter() - t) / len(reqs) * 1e6
        print(f"tokens: {args.tokens:,}   resolve: {per_resolve:.1f} µs/request   "
              f"full reload: median {statistics.median(loads):.1f} ms   "
              f"check, unchanged: median {statistics.median(checks):.2f} ms")

        enc = msgspec.json.Encoder()
        who = Caller("t0", Role.INGEST, "team0", token_id=1)
        pm.writer.ingest([])  # loads the writer's state
        for label, caller, prefix in (("auth off (no caller)", None, "off"),
                                      ("team ingest token", who, "on")):
            batches = []
            for b in range(args.events // 100):
                evs = [{"pipeline": f"{prefix}/p{(b * 100 + i) % args.pipelines}", "run_id": f"r{b}-{i}",
                        "type": "COMPLETE", "event_time": T0 + b, "duration_s": 5} for i in range(100)]
                batches.append(native.parse(enc.encode(evs), T0 + b))
            t = time.perf_counter()
            for evs in batches:
                pm.writer.ingest(evs, caller=caller)
            rate = args.events / (time.perf_counter() - t)
            print(f"ingest, {label}: {rate:,.0f} events/s ({args.events:,} events, "
                  f"{args.pipelines} pipelines, batches of 100, inline writer)")
    finally:
        pm.close()
        tmp.cleanup()


if __name__ == "__main__":
    main()
