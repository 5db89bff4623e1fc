#!/usr/bin/env python3
"""Why a generated set scores as it does: its false-positive clusters and missed anomalies, by cause.

    python benchmarks/anomaly_why.py --data /tmp/anomaly-drift/gen-drift [--learned] [--list]

Runs the detectors in-process over a set written by anomaly_gen.py (a drift preset: it reads truth.jsonl
and special.jsonl too), scores the flags as the shared scorer does (same windows, same clustering), and
prints each false cluster and each miss with what was going on there: the finding, the day (holiday,
month-end), the nearest level shift or schedule move before it, the pipeline's trend and noise, and for
a missed metric anomaly the z its runs got (the alarm line is 4). An analysis aid, not a benchmark: it
records every metric score by wrapping the suite's per-metric call.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from pipemon import calendars
from pipemon.backtest import InputFormat, _unix, drive, read_pipelines, read_records
from pipemon.engine.detect import DetectorSuite, suite as suite_mod
from pipemon.engine.detect.metric import MetricBaseline


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


def day(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--learned", action="store_true", help="schedules learned (only the calendars declared)")
    ap.add_argument("--sensitivity", type=float, default=1.0)
    ap.add_argument("--list", action="store_true", help="every cluster and miss, not only the summary")
    a = ap.parse_args(argv)
    data = Path(a.data)
    metas = {m["pipeline_id"]: m for m in load(data / "pipelines.jsonl")}
    truth = {m["pipeline_id"]: m for m in load(data / "truth.jsonl")}
    events = load(data / "events.jsonl")
    special = {(s["pipeline_id"], s["day"]): s["kind"] for s in load(data / "special.jsonl")}

    with open(data / "runs.jsonl", "rb") as f:
        lines, _ = read_records(f, InputFormat.RUNS)
    years = calendars.years_spanning((_unix(lines[0]), _unix(lines[-1])))
    if a.learned:
        decl = b"".join(json.dumps({"pipeline_id": p, "calendar": m.get("calendar")}).encode() + b"\n"
                        for p, m in metas.items())
    else:
        decl = (data / "pipelines.jsonl").read_bytes()
    specs = read_pipelines(decl.splitlines(keepends=True), a.sensitivity, years)  # type: ignore[arg-type]
    suite = DetectorSuite(a.sensitivity)
    for pid, spec in specs.items():
        suite.configure(pid, spec)

    # every metric score: (pid, metric, run_id) -> (z, expected, scale, x, mu-level, shift state)
    scores: dict[tuple[str, str, str], tuple[float, float, float, float, dict[str, Any]]] = {}
    current: list[Any] = [None]
    orig_metric, orig_update = suite_mod.DetectorSuite._metric, MetricBaseline.update

    def metric(self, p, metric, t, x, run_id, now, *args, **kw):  # type: ignore[no-untyped-def]
        current[0] = (p.pid, metric, run_id)
        return orig_metric(self, p, metric, t, x, run_id, now, *args, **kw)

    def update(self, t, x, line, *args, **kw):  # type: ignore[no-untyped-def]
        state = {"streak": len(self.streak), "prev_left": self.prev_left, "slope30": self.slope * 30 * 86400,
                 "dev": self.dev, "q95": self.q95, "episode": self.episode,
                 "beta": self.given.beta() if self.given is not None else None}
        res = orig_update(self, t, x, line, *args, **kw)
        if current[0] is not None and res[0] is not None:
            z, mu, s, season = res[0]
            scores[current[0]] = (z, mu, s, x, {**state, "season": season})
        return res

    suite_mod.DetectorSuite._metric = metric  # type: ignore[method-assign]
    MetricBaseline.update = update  # type: ignore[method-assign]
    findings = drive(suite, lines, InputFormat.RUNS)

    end_of: dict[str, float] = collections.defaultdict(lambda: -math.inf)
    for ln in lines:
        end_of[ln.pipeline_id] = max(end_of[ln.pipeline_id], _unix(ln) + (ln.duration_s or 0.0))
    wins = collections.defaultdict(list)
    ign = collections.defaultdict(list)
    for e in events:
        (wins if e["kind"] == "anomaly" else ign)[e["pipeline_id"]].append(e)
    by_pid = collections.defaultdict(list)
    for f in findings:
        m = metas[f.pipeline_id]
        if m["eval_start_unix"] <= f.time <= end_of[f.pipeline_id]:
            by_pid[f.pipeline_id].append(f)

    def context(pid: str, t: float) -> list[str]:
        """What was going on at t: the day, the last shift or move before it, the trend."""
        m, tr = metas[pid], truth.get(pid, {})
        iv = float(m["interval_s"])
        tags = []
        kind = special.get((pid, day(t)))
        if kind:
            tags.append(kind)
        before = [e for e in ign[pid] if e["start_unix"] <= t + iv]
        if before:
            e = max(before, key=lambda e: e["start_unix"])
            after_end = (t - e["end_unix"]) / iv
            if after_end < 48 if iv < 86400 else after_end < 14:
                what = e["type"].removeprefix("level_shift_")
                f = e["factor"]
                size = f"{f / 60:+.0f} min" if what == "schedule" else f"x{math.exp(f):.2f}"
                tags.append(f"{after_end:+.0f} iv after {what} {size}")
        if tr:
            rt, dtr = tr["trend_rows_30d"], tr["trend_dur_30d"]
            if abs(math.log(rt)) > 0.07 or abs(math.log(dtr)) > 0.07:
                tags.append(f"trend rows x{rt:.2f} dur x{dtr:.2f}/30d")
        return tags

    done_at = {ln.run_id: _unix(ln) + (ln.duration_s or 0.0) for ln in lines}

    def after_window(pid: str, t: float) -> bool:
        """t is past an anomaly's window but no later than its runs' completion: the anomaly, seen late."""
        for e in wins[pid]:
            ends = [done_at[r] for r in e["run_ids"] if r in done_at]
            if ends and e["end_unix"] < t <= max(ends) + 1.0:
                return True
        return False

    def cause(f: Any, tags: list[str]) -> str:
        if f is not None and after_window(f.pipeline_id, f.time):
            return "an anomaly whose run ends after its window"
        for key in ("holiday", "month_end"):
            if key in tags:
                return key
        for t in tags:
            if "after schedule" in t:
                return "after move"
            if " iv after " in t:
                return "after shift"
        return "other"

    # false clusters, as the scorer counts them
    clusters = []
    for pid, fl in by_pid.items():
        tol = float(metas[pid]["fp_tol_s"])
        open_t = None
        for f in sorted(fl, key=lambda f: f.time):
            if any(e["start_unix"] <= f.time <= e["end_unix"] for e in wins[pid] + ign[pid]):
                continue
            if open_t is None or f.time - open_t > tol:
                open_t = f.time
                clusters.append([f])
            else:
                clusters[-1].append(f)
    misses = []
    tp = 0
    for pid, ws in wins.items():
        for e in ws:
            if any(e["start_unix"] <= f.time <= e["end_unix"] for f in by_pid[pid]):
                tp += 1
            else:
                misses.append(e)
    n = tp + len(misses)
    p = tp / max(tp + len(clusters), 1)
    r = tp / max(n, 1)
    print(f"{data.name}, {'learned' if a.learned else 'declared'}: P={p:.3f} R={r:.3f} "
          f"F1={2 * p * r / max(p + r, 1e-9):.3f} TP={tp} FN={len(misses)} FP={len(clusters)}")

    print("\n## false clusters by finding and cause")
    summ = collections.Counter()
    for c in clusters:
        f = c[0]
        tags = context(f.pipeline_id, f.time)
        key = f"{f.kind.value}/{f.metric}/{f.direction.value if f.direction else '-'}"
        summ[(key, cause(f, tags))] += 1
    for (key, why), k in sorted(summ.items(), key=lambda kv: -kv[1]):
        print(f"  {k:3d}  {key:36s} {why}")
    if a.list:
        for c in clusters:
            f = c[0]
            m = metas[f.pipeline_id]
            when = dt.datetime.fromtimestamp(f.time, dt.UTC)
            print(f"  {f.pipeline_id} {m['schedule']:7s} {when:%a %m-%d %H:%M} {f.kind.value:12s} "
                  f"{f.score:5.1f} x{len(c)} [{'; '.join(context(f.pipeline_id, f.time))}] "
                  f"{f.explanation[:110]}")

    # the learned scale against the noise drawn: s / (TAIL x the noise's true mean absolute deviation)
    if truth:
        print("\n## learned scale / true scale (median, p90), ordinary scored runs outside every window")
        ratios: dict[str, list[float]] = collections.defaultdict(list)
        rid_time = {ln.run_id: _unix(ln) for ln in lines}
        busy = {pid: [(e["start_unix"], e["end_unix"]) for e in wins[pid] + ign[pid]] for pid in metas}
        for (pid, metric, rid), (z, mu, sc, x, st) in scores.items():
            tr = truth.get(pid)
            t = rid_time.get(rid)
            if tr is None or t is None or any(a0 <= t <= a1 for a0, a1 in busy[pid]):
                continue
            sd = tr["noise"] if metric == "rows" else math.hypot(tr["dur_noise"], tr["alpha"] * tr["noise"])
            key = f"{metric} {tr['kind']}"
            ratios[key].append(sc / (2.8 * 0.707 * sd))
        for key, v in sorted(ratios.items()):
            v.sort()
            print(f"  {key:22s} n={len(v):6d} median {v[len(v) // 2]:.2f} p90 {v[int(len(v) * 0.9)]:.2f}")

    print("\n## misses by type and cause")
    summ = collections.Counter()
    rows = []
    for e in misses:
        pid = e["pipeline_id"]
        tags = context(pid, e["start_unix"])
        zs = []
        for rid in e["run_ids"]:
            for metric in ("duration_s", "rows"):
                sc = scores.get((pid, metric, rid))
                if sc is not None:
                    zs.append((metric, sc))
        if e["type"] in ("rows_partial", "rows_zero", "volume_spike"):
            zs = [x for x in zs if x[0] == "rows"]
        elif e["type"] == "duration_spike":
            zs = [x for x in zs if x[0] == "duration_s"]
        best = max((abs(sc[0]) for _, sc in zs), default=None)
        scored = "unscored" if e["type"] not in ("late_run", "missing_run", "failure_burst", "hung_run") and (
            not zs) else f"|z|max {best:.1f}" if best is not None else ""
        why = cause(None, tags) if tags else "other"
        if e.get("on"):
            why = f"on {e['on']}"
        ends = [done_at[r] for r in e["run_ids"] if r in done_at]
        if ends and any(e["end_unix"] < f.time <= max(ends) + 1.0 for f in by_pid[pid]):
            why = "flagged after its window (the run ends after it)"
        bucket = ("" if best is None else "z<2" if best < 2 else "z 2-3" if best < 3 else "z 3-4" if best < 4
                  else "z>=4")
        summ[(e["type"], why, bucket)] += 1
        rows.append((e, tags, zs, scored))
    for (typ, why, b), k in sorted(summ.items()):
        print(f"  {k:3d}  {typ:16s} {why:12s} {b}")
    late = sum(k for (_, why, _), k in summ.items() if why.startswith("flagged after"))
    print(f"  misses flagged after their window: {late} of {len(misses)}")
    if a.list:
        for e, tags, zs, scored in rows:
            pid = e["pipeline_id"]
            tr = truth.get(pid, {})
            noise = f"noise {tr['noise']:.2f}/{tr['dur_noise']:.2f}" if tr else ""
            detail = " ".join(
                f"{mt[:3]} z={sc[0]:+.1f} x={sc[3]:.4g} exp={math.expm1(sc[1]):.4g} s={sc[2]:.2f} "
                f"(dev {sc[4]['dev']:.3f} q95 {sc[4]['q95']:.3f} streak {sc[4]['streak']} "
                f"prev {sc[4]['prev_left']} "
                f"slope30 {sc[4]['slope30']:+.2f} ep {sc[4]['episode']})"
                for mt, sc in zs)
            print(f"  {pid} {metas[pid]['schedule']:7s} {e['type']:14s} {e['start'][:16]} "
                  f"{e.get('on', ''):9s} "
                  f"{noise} [{'; '.join(tags)}] {scored} {detail}")


if __name__ == "__main__":
    main()
