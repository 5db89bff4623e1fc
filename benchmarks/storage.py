#!/usr/bin/env python3
"""Storage benchmark: bytes on disk per event for the demo fleet's stream, on SQLite and PostgreSQL.

    python benchmarks/storage.py                       # 9 days (what `pipemon demo` replays), both backends
    python benchmarks/storage.py --days 3 --skip-pg
    python benchmarks/storage.py --uncompressed        # the same with bodies stored as received (before 0007)

The demo fleet's OpenLineage events (src/pipemon/sim) go through the front door's parser and the writer, with
the clock following the events and a tick every 5 simulated minutes, as `pipemon demo` replays its history.
Then: SQLite, the file's size after a WAL checkpoint (and each table's and index's share, from dbstat);
PostgreSQL, pg_total_relation_size (table + indexes + TOAST) of every table of a fresh schema, dropped
afterwards. Also the bodies' raw and stored sizes, and what compressing one costs (µs, measured alone).
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import msgspec
import sqlalchemy as sa

from pipemon import sim
from pipemon.app import build
from pipemon.clock import FakeClock
from pipemon.config import loads
from pipemon.ingest import openlineage
from pipemon.store import bodies
from pipemon.store.db import normalize_url

DAY = 86400.0
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def feed(db_url: str, days: float, pipelines: int, seed: int) -> tuple[int, int, float, float]:
    """Ingest `days` of the demo stream; (events, raw body bytes, seconds, CPU seconds of this process)."""
    fleet = sim.build_fleet(seed, pipelines)
    start = sim.DEFAULT_START
    clock = FakeClock(start)
    pm = build(db_url, loads(sim.demo_config(fleet)), clock=clock, deliver=False)
    enc = msgspec.json.Encoder()
    n = raw = 0
    batch: list = []
    next_tick = start + 300
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        for ev in sim.Feeder(fleet, start).history(start, start + days * DAY):
            t = datetime.fromisoformat(ev["eventTime"]).timestamp()
            if t >= next_tick:
                if batch:
                    pm.writer.ingest(batch)
                    batch = []
                clock.set(t)
                pm.writer.tick()
                next_tick = t + 300
            got = openlineage.parse(enc.encode(ev), t)
            n += len(got)
            raw += sum(len(e.raw or b"") for e in got)
            batch += got
        if batch:
            pm.writer.ingest(batch)
    finally:
        pm.close()
    return n, raw, time.perf_counter() - t0, time.process_time() - cpu0


def stored_body_bytes(engine: sa.Engine) -> int:
    with engine.connect() as c:
        return int(c.exec_driver_sql("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM events").scalar_one())


def sqlite_sizes(path: Path) -> tuple[int, list[tuple[str, int]]]:
    c = sqlite3.connect(path)
    try:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        parts = c.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    finally:
        c.close()
    return path.stat().st_size, parts


def pg_sizes(engine: sa.Engine) -> tuple[int, list[tuple[str, int]]]:
    with engine.connect() as c:
        parts = c.exec_driver_sql(
            "SELECT tablename, "
            "pg_total_relation_size(quote_ident(schemaname) || '.' || quote_ident(tablename)) "
            "FROM pg_tables WHERE schemaname = current_schema() ORDER BY 2 DESC").all()
    return sum(p[1] for p in parts), [(p[0], p[1]) for p in parts]


def encode_cost(days: float, pipelines: int, seed: int) -> tuple[float, float, float]:
    """µs of CPU to compress one body without and with a dictionary, and bytes a body with one; alone."""
    fleet = sim.build_fleet(seed, pipelines)
    enc = msgspec.json.Encoder()
    raws: list[bytes] = []
    start = sim.DEFAULT_START
    for ev in sim.Feeder(fleet, start).history(start, start + min(days, 1.0) * DAY):
        raws += [e.raw for e in openlineage.parse(enc.encode(ev), start + DAY) if e.raw]
    import zstandard
    plain = zstandard.ZstdCompressor(level=bodies.LEVEL)
    d = zstandard.train_dictionary(bodies.DICT_SIZE, raws[:bodies.SAMPLES], level=bodies.LEVEL)
    d.precompute_compress(level=bodies.LEVEL)
    with_dict = zstandard.ZstdCompressor(level=bodies.LEVEL, dict_data=d, write_dict_id=True)
    rest = raws[bodies.SAMPLES:]
    out = []
    for c in (plain, with_dict):
        t = time.process_time()  # CPU time: what the writer thread pays, whatever else the machine runs
        size = sum(len(c.compress(r)) for r in rest)
        out.append(((time.process_time() - t) / len(rest) * 1e6, size / len(rest)))
    return out[0][0], out[1][0], out[1][1]


def report(backend: str, n: int, raw: int, seconds: float, cpu: float, total: int, stored: int,
           parts: list[tuple[str, int]]) -> None:
    print(f"\n{backend}: {n:,} events ingested in {seconds:.1f} s ({n / seconds:,.0f} events/s, one process; "
          f"{cpu / n * 1e6:,.0f} µs CPU an event: generating, parsing, writing, evaluating)")
    print(f"  on disk: {total / 1e6:,.1f} MB = **{total / n:,.0f} bytes per event**")
    print(f"  bodies: {raw / n:,.0f} bytes raw, {stored / n:,.0f} stored ({raw / max(stored, 1):.1f}x)")
    largest = ", ".join(f"{name} {size / n:,.0f}" for name, size in parts[:8])
    print(f"  largest parts: {largest} (B/event)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=9.0, help="days of the demo stream (the demo replays 9)")
    ap.add_argument("--pipelines", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pg", default=os.environ.get("PIPEMON_TEST_POSTGRES_URL") or DEFAULT_PG)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--uncompressed", action="store_true",
                    help="store bodies as received (as before migration 0007), for comparison")
    a = ap.parse_args()
    if a.uncompressed:  # the benchmark's own switch: production code has none
        bodies.BodyCodec.encode = lambda self, raw: raw  # type: ignore[method-assign]
    print(f"### storage: {a.days:g} days of the demo stream, {a.pipelines} pipelines, bodies "
          f"{'as received' if a.uncompressed else 'compressed'}; load average {os.getloadavg()[0]:.2f}")
    if not a.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pipemon.db"
            n, raw, secs, cpu = feed(f"sqlite:///{path}", a.days, a.pipelines, a.seed)
            engine = sa.create_engine(f"sqlite:///{path}")
            stored = stored_body_bytes(engine)
            engine.dispose()
            total, parts = sqlite_sizes(path)
            report("SQLite", n, raw, secs, cpu, total, stored, parts)
    if not a.skip_pg:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(normalize_url(a.pg))
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = f"{normalize_url(a.pg)}{'&' if '?' in a.pg else '?'}options=-csearch_path%3D{schema}"
        try:
            n, raw, secs, cpu = feed(url, a.days, a.pipelines, a.seed)
            engine = sa.create_engine(url)
            stored = stored_body_bytes(engine)
            total, parts = pg_sizes(engine)
            engine.dispose()
            report("PostgreSQL", n, raw, secs, cpu, total, stored, parts)
        finally:
            with admin.begin() as c:
                c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            admin.dispose()
    if not a.uncompressed:
        plain_us, dict_us, dict_b = encode_cost(a.days, a.pipelines, a.seed)
        print(f"\ncompressing one body (measured alone, CPU time): {plain_us:.1f} µs without a dictionary, "
              f"{dict_us:.1f} µs with one ({dict_b:,.0f} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
