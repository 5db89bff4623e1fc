"""Fault drill: what a client sees and what is lost, for the faults an operator meets. Prints one line each.

    python benchmarks/fault_drill.py [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Faults, each under a steady load of uniquely identified events (10 per POST, retried by the loader until
acknowledged, as a client with idempotency keys does):
  kill9      `pipemon serve` is killed with SIGKILL mid-load, then started again on the same database
  db-cut     the database connection is cut (a proxy resets everything) for 5 s
  db-freeze  the database stops answering without closing its sockets (the proxy forwards nothing) for 20 s
  garbage    malformed and hostile bodies; then every read endpoint is asked for a 5xx
The PostgreSQL runs use a schema of their own behind a proxy (tests/robustness/proxy.py); the server
itself is never stopped. "lost" counts acknowledged events missing from the store afterwards.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import msgspec
import sqlalchemy as sa

from pipemon.store.bodies import read_bodies

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import LiveServer, _pg_schema_url
from tests.robustness.proxy import FaultProxy


class Loader(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.acked, self.seen, self.stop = url, set(), collections.Counter(), threading.Event()

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=15) as http:
            while not self.stop.is_set():
                n += 1
                batch = [{"pipeline": "drill/load", "type": "HEARTBEAT", "event_id": f"{uuid.uuid4().hex}",
                          "event_time": time.time()} for _ in range(10)]
                while not self.stop.is_set():
                    try:
                        r = http.post(self.url + "/api/v1/events", json=batch)
                        self.seen[r.status_code] += 1
                        if r.status_code == 200:
                            self.acked.update(e["event_id"] for e in batch)
                            break
                    except httpx.HTTPError as e:
                        self.seen[type(e).__name__] += 1
                    time.sleep(0.2)
                time.sleep(0.02)


def stored_ids(url: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as c:
        bodies = read_bodies(c)
    engine.dispose()
    return [msgspec.json.decode(b).get("event_id") for b in bodies]


def report(name: str, backend: str, loader: Loader, url: str, extra: str = "") -> None:
    ids = stored_ids(url)
    lost = len(loader.acked - set(ids))
    dup = len(ids) - len(set(ids))
    print(f"{name:10} {backend:8} acked {len(loader.acked):6}  lost {lost}  stored twice {dup}  "
          f"client saw {dict(loader.seen)} {extra}", flush=True)


def back_after(url: str, since: float) -> float:
    while True:
        try:
            if httpx.post(url + "/api/v1/events", json={"pipeline": "drill/probe", "type": "HEARTBEAT"},
                          timeout=15).status_code == 200:
                return time.monotonic() - since
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def kill9(db: str, direct: str, backend: str, tmp: Path) -> None:
    s = LiveServer(db, tmp).start()
    loader = Loader(s.url)
    loader.start()
    time.sleep(3)
    s.proc.send_signal(9)
    s.proc.wait()
    time.sleep(1)
    s2 = LiveServer(db, tmp)
    s2.port, s2.url = s.port, s.url
    t0 = time.monotonic()
    s2.start()
    up = time.monotonic() - t0
    time.sleep(2)
    loader.stop.set()
    loader.join(20)
    s2.stop()
    report("kill9", backend, loader, direct, f"restart to /healthz {up:.1f} s")


def db_fault(kind: str, seconds: float, db: str, proxy: FaultProxy, direct: str, tmp: Path) -> None:
    s = LiveServer(db, tmp).start()
    loader = Loader(s.url)
    loader.start()
    time.sleep(2)
    (proxy.cut if kind == "db-cut" else proxy.freeze)()
    ready = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        ready.append(httpx.get(s.url + "/readyz", timeout=15).status_code)
        time.sleep(0.5)
    proxy.restore()
    back = back_after(s.url, time.monotonic())
    time.sleep(1)
    loader.stop.set()
    loader.join(20)
    s.stop()
    report(kind, "postgres", loader, direct, f"/readyz during: {sorted(set(ready))}; accepting {back:.1f} s "
           "after the database's return")
    print("   server log:", " | ".join(line.split(" ", 2)[-1][:140] for line in s.logs().splitlines()
                                       if "database" in line)[:600], flush=True)


def garbage(db: str, tmp: Path) -> None:
    s = LiveServer(db, tmp).start()
    bodies = {
        "not json": (b"{nope", {}),
        "gzip bomb": (gzip.compress(b"[" + b"{}," * 2_000_000 + b"{}]"), {"Content-Encoding": "gzip"}),
        "bad gzip": (b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}),
        "deep": (b"[" * 100_000 + b"]" * 100_000, {}),
        "wrong types": (b'{"pipeline": 5, "type": "NOPE", "event_time": "yesterday"}', {}),
        "NUL": (b'{"pipeline": "a/\\u0000", "type": "START"}', {}),
        "huge name": (msgspec.json.encode({"pipeline": "a/" + "x" * 100_000, "type": "START"}), {}),
    }
    seen = {}
    for name, (body, headers) in bodies.items():
        with httpx.Client(timeout=30) as http:  # a fresh connection each: one answer never spoils the next
            try:
                r = http.post(s.url + "/api/v1/events", content=body,
                              headers={"Content-Type": "application/json", **headers})
                seen[name] = r.status_code
            except httpx.HTTPError as e:
                seen[name] = type(e).__name__
    with httpx.Client(timeout=30) as http:
        paths = [p for p in http.get(s.url + "/openapi.json").json()["paths"] if "{" not in p]
        reads = collections.Counter(http.get(s.url + p).status_code for p in paths)
    s.stop()
    print(f"garbage    {Path(db).suffix or db.split(':')[0]:8} {seen}  then GET of {len(paths)} paths: "
          f"{dict(reads)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default=os.environ.get("PIPEMON_TEST_POSTGRES_URL"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pipemon-drill-"))
    sqlite = f"sqlite:///{tmp / 'drill.db'}"
    kill9(sqlite, sqlite, "sqlite", tmp)
    garbage(f"sqlite:///{tmp / 'garbage.db'}", tmp)
    if not args.pg:
        return
    base = sa.make_url(args.pg)
    admin = sa.create_engine(base)
    for kind, seconds in (("kill9", 0), ("db-cut", 5), ("db-freeze", 20)):
        schema = f"drill_{uuid.uuid4().hex[:10]}"
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {schema}")
        proxy = FaultProxy((base.host or "127.0.0.1", base.port or 5432))
        proxied = base.set(host="127.0.0.1", port=proxy.port)
        via = _pg_schema_url(proxied.render_as_string(hide_password=False), schema)
        direct = _pg_schema_url(base.render_as_string(hide_password=False), schema)
        try:
            if kind == "kill9":
                kill9(via, direct, "postgres", tmp)
            else:
                db_fault(kind, seconds, via, proxy, direct, tmp)
        finally:
            proxy.close()
            with admin.begin() as c:
                c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


if __name__ == "__main__":
    main()
