"""How fast the demo simulator generates: fast-path runs/s and OpenLineage export events/s.

    python benchmarks/sim_speed.py                   # 10,000 pipelines / 10M runs, then a 30-day export
    python benchmarks/sim_speed.py --runs 1000000    # a quicker look
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from pipemon import sim


def fast_path(pipelines: int, runs: int) -> None:
    t0 = time.perf_counter()
    fleet = sim.build_fleet(seed=0, size=pipelines)
    built = time.perf_counter() - t0
    days = math.ceil(runs / fleet.runs_per_day())
    t0 = time.perf_counter()
    count = 0
    for _ in sim.run_records(fleet, sim.DEFAULT_START, sim.DEFAULT_START + days * 86400.0):
        count += 1
    elapsed = time.perf_counter() - t0
    print(f"fleet   {pipelines:>10,} pipelines built in {built:.2f} s")
    print(f"runs    {count:>10,} runs ({days} days) in {elapsed:.2f} s = {count / elapsed:,.0f} runs/s")


def export(days: float, fmt: sim.Format) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        t0 = time.perf_counter()
        summary = sim.export(path, days=days, fmt=fmt)
        elapsed = time.perf_counter() - t0
        size = path.stat().st_size / 2**20
    print(f"export  {summary.events:>10,} {fmt.value} events ({days:g} days, {sim.DEFAULT_SIZE} pipelines, "
          f"{size:,.0f} MiB) in {elapsed:.2f} s = {summary.events / elapsed:,.0f} events/s; "
          f"{summary.incidents} incidents")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--days", type=float, default=30, help="days of the default fleet to export")
    args = parser.parse_args()
    fast_path(args.pipelines, args.runs)
    for fmt in sim.Format:
        export(args.days, fmt)


if __name__ == "__main__":
    main()
