#!/usr/bin/env python3
"""Config reload at fleet scale: how long do reading and judging the files take, and how long does the
swap hold the writer (the one thread that changes state: no event is processed meanwhile)? The globs are
matched before the swap, on the reloading thread.

Builds a pipemon (in-process, no HTTP) on a fresh SQLite file with --pipelines pipelines spread over
--teams teams, each with one team file (pipeline rules, a receiver, a route, a maintenance window), then
reloads --reloads times, each time with every team's tier changed (so every pipeline's rule changes).

    python benchmarks/reload.py [--pipelines 20000] [--teams 50] [--reloads 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pipemon.app import build  # noqa: E402
from pipemon.clock import FakeClock  # noqa: E402
from pipemon.ingest import native  # noqa: E402
from pipemon.reload import Reloader  # noqa: E402
from pipemon.teamconfig import ConfigSource  # noqa: E402

T0 = 1_790_000_000.0


def write_config(root: Path, teams: int, tier: int) -> None:
    (root / "config.d").mkdir(exist_ok=True)
    names = [f"team{t:03d}" for t in range(teams)]
    (root / "pipemon.yaml").write_text("teams:\n" + "".join(f"  - {{name: {n}}}\n" for n in names)
                                       + "receivers:\n  - {name: org, webhook: {url: 'http://127.0.0.1:9/o'}}\n"
                                       + "route: {receiver: org}\n")
    for n in names:
        (root / "config.d" / f"{n}.yaml").write_text(f"""pipelines:
  - {{match: "{n}/daily_*", tier: {tier}, schedule: "0 2 * * *", grace: 1h}}
  - {{match: "{n}/*", tier: {tier}}}
receivers:
  - {{name: {n}-hook, webhook: {{url: "http://127.0.0.1:9/{n}"}}}}
route: {{receiver: {n}-hook, group_by: [pipeline]}}
maintenance_windows:
  - {{name: {n}-freeze, schedule: "0 0 * * 6", duration: 2h}}
""")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipelines", type=int, default=20_000)
    ap.add_argument("--teams", type=int, default=50)
    ap.add_argument("--reloads", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_config(root, args.teams, 1)
        reloader = Reloader(ConfigSource(root / "pipemon.yaml", root / "config.d"))
        loaded = reloader.initial()
        assert loaded.settings is not None and loaded.ok, loaded.statuses
        pm = build(f"sqlite:///{root / 'pipemon.db'}", loaded.settings, clock=FakeClock(T0), deliver=False,
                   synchronous="OFF")
        pm.reloader = reloader
        for lo in range(0, args.pipelines, 5000):  # a native batch holds at most 10,000 events
            body = b"[" + b",".join(
                b'{"pipeline": "team%03d/%s_%d", "run_id": "r", "type": "COMPLETE", "event_time": %f}'
                % (i % args.teams, b"daily" if i % 2 else b"hourly", i, T0)
                for i in range(lo, min(lo + 5000, args.pipelines))) + b"]"
            pm.writer.ingest(native.parse(body, T0), timeout=600)
        print(f"{len(pm.writer.pipelines)} pipelines, {args.teams} team files")
        reads, swaps, holds = [], [], []
        call = pm.writer.call

        def timed(fn, timeout=None):  # the part of a reload that runs on the writer
            t = time.perf_counter()
            try:
                return call(fn, timeout)
            finally:
                holds.append(time.perf_counter() - t)
        pm.writer.call = timed  # type: ignore[method-assign]
        for k in range(args.reloads):
            write_config(root, args.teams, 2 + k % 2)
            t = time.perf_counter()
            got = reloader.source.read(reloader.good)
            reads.append(time.perf_counter() - t)
            assert got.settings is not None
            t = time.perf_counter()
            pm.reconfigure(got.settings)
            swaps.append(time.perf_counter() - t)
            assert pm.settings.rule_for("team000/daily_1").tier == 2 + k % 2
        pm.close()
    print(f"read and judge the files: median {statistics.median(reads) * 1000:.0f} ms, "
          f"max {max(reads) * 1000:.0f} ms")
    print(f"reconfigure, all of it (every pipeline's rule changed): "
          f"median {statistics.median(swaps) * 1000:.0f} ms, max {max(swaps) * 1000:.0f} ms")
    print(f"  of which the writer is held (no event processed meanwhile): "
          f"median {statistics.median(holds) * 1000:.0f} ms, max {max(holds) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
