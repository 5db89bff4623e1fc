#!/usr/bin/env python3
"""Replay benchmark: `pipemon replay` over 30 days of the demo fleet's events (>= 200 pipelines).

Reports events/s and the page count per team next to what a naive one-alert-per-failed-or-late-run
policy would have sent. Goal: the 30 days replay in under 60 s on this machine.

    python benchmarks/replay.py [--days 30] [--pipelines 240] [--events /tmp/pipemon-30d.jsonl]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pipemon import sim
from pipemon.config import loads
from pipemon.replay import replay, summary_table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--pipelines", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--events", type=Path, default=Path("/tmp/pipemon-replay-30d.jsonl"),
                    help="exported once, reused while it matches --days/--pipelines/--seed")
    ap.add_argument("--output", type=Path, default=None, help="notifications JSONL")
    ap.add_argument("--max-repeat-interval", default="24h",
                    help="the route's max_repeat_interval (4h: repeats every 4 h whatever the schedule, as "
                         "before repeats followed it)")
    a = ap.parse_args()
    stamp = a.events.with_suffix(".args")
    want = f"{a.days} {a.pipelines} {a.seed}"
    if not a.events.exists() or not stamp.exists() or stamp.read_text() != want:
        t = time.perf_counter()
        s = sim.export(a.events, days=a.days, pipelines=a.pipelines, seed=a.seed)
        stamp.write_text(want)
        print(f"exported {s.events:,} events in {time.perf_counter() - t:.1f}s to {a.events}", file=sys.stderr)
    fleet = sim.build_fleet(a.seed, a.pipelines)
    text = sim.demo_config(fleet, alerting=False) + """
receivers:
  - name: oncall
    webhook: {url: "http://127.0.0.1:9/never-called"}
route:
  receiver: oncall
  group_by: [team, pipeline]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  max_repeat_interval: {max_repeat}
""".replace("{max_repeat}", a.max_repeat_interval)
    settings = loads(text)
    out = open(a.output, "w") if a.output else None
    with open(a.events, "rb") as src:
        res = replay(settings, src, out, until=None)
    if out:
        out.close()
    print(f"\n### pipemon replay: {a.days:g} days, {a.pipelines} pipelines, {res.events:,} events\n")
    print(f"- {res.seconds:.1f} s, **{res.events / res.seconds:,.0f} events/s** (goal: the whole replay under 60 s)")
    print(f"- {res.notifications:,} notifications; rejected lines: {res.rejected}; load average "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| team | pages (critical/error: trigger, repeat, escalate) | of which repeats | warnings and info "
          "notices | naive: one page per failed or late run |")
    print("|---|---|---|---|---|")
    tot = [0, 0, 0, 0]
    for team, *vals in summary_table(res):
        print(f"| {team} | " + " | ".join(vals) + " |")
        tot = [t + int(v) for t, v in zip(tot, vals)]
    print("| **all** | " + " | ".join(f"**{t}**" for t in tot) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
