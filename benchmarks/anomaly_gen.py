#!/usr/bin/env python3
"""Synthetic pipeline-run histories with labelled anomalies: robustness checks beyond the dev split.

    python benchmarks/anomaly_gen.py --out /tmp/anomaly-gen/noisy --preset noisy --seed 7

Writes runs.jsonl, pipelines.jsonl and events.jsonl in the shared benchmark's format, so
`score.py synth --data DIR` scores flags against them. Written from the benchmark README's
description, not from its generator (which we do not have): schedules, seasonality (hour of day,
weekends, Monday catch-up, optional month-end peaks), slow trends, Student-t noise, start jitter
with a heavy tail, isolated failures, legitimate level shifts (rows, duration, schedule; their
first "adapt" runs are an ignore window) and the eight anomaly types.

Presets (each a variation the hidden splits are said to contain):
  base      hourly / daily / weekday, like dev
  noisy     1.8x the noise, heavier tails (3 degrees of freedom), 2x start jitter
  fast      every 15 min and twice daily
  monthly   monthly jobs, and daily/hourly ones with month-end peaks (normal behaviour)
  subtle    smaller anomalies: spikes x2.5-5, partial loads x0.35-0.6, lateness from 10 % of an interval
  drift     what real fleets do over a year, all at once (issue 15), each also alone:
  drift-trend     volume and duration growing 8-25 % or falling 5-15 % per 30 days, steadily
  drift-shift     level shifts twice as often (up to four a series), factors 0.5x-3x
  drift-schedule  starts moving by minutes (hourly) to hours (daily) and staying there
  drift-monthend  peaks x1.8-3 on the last business day of the month (weekday, not a holiday)
  drift-holiday   volume x0.2-0.4 on the region's public holidays (US, UK or DE; duration
                  following), the region declared as `calendar` in pipelines.jsonl
  The drift presets also label anomalies placed on holidays and month-ends, and write special.jsonl
  ({"pipeline_id","day","kind"}: every holiday and month-end day with an effect) for false-flag rates.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random

import holidays
from croniter import croniter

DAY = 86400
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # a Monday

# kind: (interval, days recorded, warm-up days, adapt runs after a level shift)
KINDS = {
    "every15": (900, 21, 7, 96),
    "hourly": (3600, 60, 14, 24),
    "twice_daily": (43200, 120, 21, 10),
    "daily": (DAY, 210, 28, 5),
    "weekday": (DAY, 210, 28, 5),
    "monthly": (30 * DAY, 900, 200, 2),
}
_BASE = {"kinds": ["hourly", "daily", "weekday"], "noise": 1.0, "dof": 4.0, "jitter": 1.0, "subtle": False,
         "month_end": 0.0}
PRESETS = {
    "base": _BASE,
    "noisy": {**_BASE, "noise": 1.8, "dof": 3.0, "jitter": 2.0},
    "fast": {**_BASE, "kinds": ["every15", "twice_daily", "hourly"]},
    "monthly": {**_BASE, "kinds": ["monthly", "daily", "hourly", "weekday"], "month_end": 0.6},
    "subtle": {**_BASE, "subtle": True},
}
# drift: a year of daily runs and four months of hourly ones, so every holiday of the regions comes by
_DRIFT = {**_BASE, "days": {"hourly": 120, "daily": 365, "weekday": 365}}
_PHENOMENA = {"trend": True, "shifts": True, "moves": True, "month_end_bd": 0.6, "holiday": 0.6}
PRESETS |= {"drift": {**_DRIFT, **_PHENOMENA}} | {
    f"drift-{name}": {**_DRIFT, key: _PHENOMENA[key]}
    for name, key in (("trend", "trend"), ("shift", "shifts"), ("schedule", "moves"), ("monthend", "month_end_bd"),
                      ("holiday", "holiday"))}
REGIONS = ("US", "UK", "DE")
TYPES = ["duration_spike", "hung_run", "rows_zero", "rows_partial", "volume_spike", "late_run", "missing_run",
         "failure_burst"]


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def student_t(rng: random.Random, dof: float) -> float:
    """A Student-t draw scaled to unit variance (heavy tails, like real run metrics), capped at +-6."""
    z = rng.gauss(0, 1)
    chi = sum(rng.gauss(0, 1) ** 2 for _ in range(int(dof)))
    return max(-6.0, min(6.0, z / math.sqrt(chi / int(dof)) * math.sqrt((dof - 2) / dof)))


def cron_for(kind: str, rng: random.Random) -> str:
    m, h = rng.randrange(60), rng.randrange(24)
    return {"every15": f"{m % 15}-59/15 * * * *", "hourly": f"{m} * * * *", "twice_daily": f"{m} {h % 12},{h % 12 + 12} * * *",
            "daily": f"{m} {h} * * *", "weekday": f"{m} {h} * * 1-5", "monthly": f"{m} {h} {rng.randrange(1, 29)} * *"}[kind]


def last_business_day(d: dt.date, off: set[dt.date]) -> bool:
    """The month's last weekday that is not a holiday."""
    if d.weekday() >= 5 or d in off:
        return False
    nxt = d + dt.timedelta(days=1)
    while nxt.month == d.month:
        if nxt.weekday() < 5 and nxt not in off:
            return False
        nxt += dt.timedelta(days=1)
    return True


def gen_pipeline(pid: str, kind: str, rng: random.Random,
                 cfg: dict) -> tuple[dict, list[dict], list[dict], list[dict], dict]:
    iv, days, warm, adapt = KINDS[kind]
    days = cfg.get("days", {}).get(kind, days)
    cron = cron_for(kind, rng)
    t0, t_end = START.timestamp(), START.timestamp() + days * DAY
    it = croniter(cron, START - dt.timedelta(seconds=1))
    slots = []
    while True:
        s = it.get_next(float)
        if s >= t_end:
            break
        slots.append(s)
    n = len(slots)
    noise = cfg["noise"] * rng.uniform(0.05, 0.25)
    dur_noise = cfg["noise"] * rng.uniform(0.08, 0.3)
    rows0 = math.log(rng.choice([1e3, 3e4, 1e6, 2e7]) * rng.uniform(0.5, 2))
    dur0 = math.log(rng.uniform(20, 2400) if iv >= 3600 else rng.uniform(10, 200))
    alpha = rng.uniform(0.3, 0.9)  # duration ~ rows ** alpha
    hod_amp = rng.uniform(0.2, 0.6) if iv < DAY else 0.0
    hod_phase = rng.uniform(0, 2 * math.pi)
    weekend = math.log(rng.uniform(0.3, 0.8)) if kind != "weekday" else 0.0
    monday = math.log(rng.uniform(1.4, 2.0)) if kind == "weekday" else 0.0
    month_end = math.log(rng.uniform(1.8, 3.0)) if rng.random() < cfg["month_end"] and kind != "monthly" else 0.0
    trend = rng.uniform(-0.3, 0.4) / (days * DAY)
    dur_trend = 0.0
    if cfg.get("trend"):  # steady growth or decline per 30 days, volume and duration apart
        def per_30d() -> float:
            return math.log(1 + rng.uniform(0.08, 0.25) if rng.random() < 0.6 else 1 - rng.uniform(0.05, 0.15))
        trend, dur_trend = per_30d() / (30 * DAY), per_30d() / (30 * DAY)
        # the duration follows the rows (alpha below), their trend too: its own part is what is left of
        # its drawn trend (before, the two added up: up to +52 % per 30 days, outside the phenomenon)
        dur_trend -= alpha * trend
    region = rng.choice(REGIONS) if cfg.get("holiday") and rng.random() < cfg["holiday"] else None
    off = set(holidays.country_holidays(region, years=range(START.year, START.year + 3))) if region else set()
    hol_f = {d: math.log(rng.uniform(0.2, 0.4)) for d in sorted(off)}
    me_bd = (math.log(rng.uniform(1.8, 3.0)) if cfg.get("month_end_bd") and rng.random() < cfg["month_end_bd"]
             else 0.0)
    jitter = cfg["jitter"] * min(iv * rng.uniform(0.005, 0.02), 600) if iv < DAY else cfg["jitter"] * rng.uniform(30, 300)
    p_fail = rng.uniform(0.005, 0.03)
    dof = cfg["dof"]
    sub = cfg["subtle"]

    eval_start = t0 + warm * DAY
    first_eval = next(i for i, s in enumerate(slots) if s >= eval_start)
    # level shifts (not for monthly: too few runs to adapt), then anomalies at free slots
    shifts: list[tuple[int, str, float]] = []
    taken: set[int] = set()

    def free(lo: int, span: int, gap: int) -> int | None:
        for _ in range(200):
            i = rng.randrange(lo, max(lo + 1, n - span - 1))
            if all(j not in taken for j in range(i - gap, i + span + gap)):
                for j in range(i - gap, i + span + gap):
                    taken.add(j)
                return i
        return None

    if kind != "monthly" and "days" not in cfg:
        for _ in range(rng.choice([0, 1, 1, 2])):
            what = rng.choice(["rows", "duration"] + (["schedule"] if iv >= DAY else []))
            i = free(first_eval, adapt, adapt)
            if i is not None:
                f = (rng.choice([-1, 1]) * rng.uniform(2, 6) * 3600 if what == "schedule"
                     else math.log(rng.choice([rng.uniform(0.45, 0.7), rng.uniform(1.5, 2.5)])))
                shifts.append((i, what, f))
    # drift: twice dev's level shifts, wider; schedule moves of minutes (hourly) to hours (daily)
    for _ in range(rng.choice([1, 2, 2, 3, 4]) if cfg.get("shifts") else 0):
        i = free(first_eval, adapt, adapt)
        if i is not None:
            f = math.log(rng.choice([rng.uniform(0.5, 0.75), rng.uniform(1.4, 3.0)]))
            shifts.append((i, rng.choice(["rows", "duration"]), f))
    for _ in range(rng.choice([1, 1, 2]) if cfg.get("moves") else 0):
        i = free(first_eval, adapt, adapt)
        if i is not None:
            f = rng.uniform(600, 6 * 3600) if iv >= DAY else rng.uniform(180, 1500)
            # in whole minutes, as a cron edit moves a job (a move of -1,020.13 s put an hourly slot 0.13 s
            # before midnight: every start after it fell on the next day, with the day before's data)
            shifts.append((i, "schedule", rng.choice([-1, 1]) * 60.0 * round(f / 60)))
    shifts.sort()
    anomalies = []
    n_anom = max(1, round(rng.uniform(3, 7) * (n - first_eval) / max(n, 1)))
    for _ in range(n_anom):
        typ = rng.choice(TYPES)
        span = {"failure_burst": 7, "rows_partial": 3, "volume_spike": 2, "duration_spike": 2, "rows_zero": 2}.get(typ, 1)
        gap = 3 if iv >= DAY else 6
        if typ == "hung_run":
            gap = max(gap, math.ceil((8 * 3600 if iv < DAY else DAY) / iv) + 2)
        i = free(first_eval, span, gap)
        if i is not None:
            anomalies.append((i, typ, rng.randint(1, span) if typ != "failure_burst" else rng.randint(3, 7)))
    # real anomalies on the special days too: they must still be caught there
    special = {i: "holiday" if day in off else "month_end" for i, s in enumerate(slots) if i >= first_eval
               for day in [dt.datetime.fromtimestamp(s, dt.UTC).date()]
               if (day in off) or (me_bd and last_business_day(day, off))}
    on: dict[int, str] = {}
    if special:
        for _ in range(rng.choice([1, 2, 3])):
            i = rng.choice(sorted(special))
            typ = rng.choice(["rows_partial", "volume_spike", "rows_zero", "duration_spike", "late_run",
                              "missing_run"])
            if all(j not in taken for j in range(i - 3, i + 4)):
                taken.update(range(i - 3, i + 4))
                anomalies.append((i, typ, 1))
                on[i] = special[i]
    anom_at = {i: (typ, k) for i, typ, k in anomalies}

    runs, events = [], []
    rows_shift = dur_shift = sched_shift = 0.0
    active_anom: dict | None = None
    blocked_until = -1.0
    k_run = 0
    for i, slot in enumerate(slots):
        for j, what, f in shifts:
            if j == i:
                if what == "rows":
                    rows_shift += f
                elif what == "duration":
                    dur_shift += f
                else:
                    sched_shift += f
                end_i = min(n - 1, i + adapt)
                # (the window opens at the shifted run's start: the slot plus any earlier schedule move)
                events.append({"event_id": f"{pid}-s{i}", "pipeline_id": pid, "kind": "ignore",
                               "type": f"level_shift_{what}", "start_unix": slot + sched_shift,
                               "end_unix": slots[end_i] + sched_shift + iv * 0.5, "run_ids": [], "factor": f})
        t = slot - t0
        # drift: a moved job's data follows the hour and day it now runs at (the older presets keep the slot's)
        at = slot + sched_shift if "days" in cfg else slot
        d = dt.datetime.fromtimestamp(at, dt.UTC)
        last_day = (d + dt.timedelta(days=1)).month != d.month
        day = d.date()
        drift = (hol_f.get(day, 0.0) + (me_bd if me_bd and last_business_day(day, off) else 0.0))
        lr = (rows0 + drift + trend * t + rows_shift + hod_amp * math.sin(2 * math.pi * (at % DAY) / DAY + hod_phase)
              + (weekend if d.weekday() >= 5 else 0.0) + (monday if d.weekday() == 0 else 0.0)
              + (month_end if last_day else 0.0) + noise * student_t(rng, dof))
        ld = dur0 + dur_shift + dur_trend * t + alpha * (lr - rows0) + dur_noise * student_t(rng, dof)
        start = slot + sched_shift + jitter * min(rng.expovariate(1.0) * (3 if rng.random() < 0.05 else 1), 12)
        rows, dur = math.exp(lr), math.exp(ld)
        status = "failed" if rng.random() < p_fail else "success"
        if start < blocked_until:
            continue  # a hung run blocks the schedule
        typ, k = anom_at.get(i, (None, 0))
        if typ is not None:
            active_anom = {"type": typ, "left": k, "i": i, "run_ids": [], "start": slot + sched_shift, "k": k}
            if typ == "missing_run":
                events.append({"event_id": f"{pid}-a{i}", "pipeline_id": pid, "kind": "anomaly", "type": typ,
                               "start_unix": slot + sched_shift, "end_unix": slot + sched_shift + 2 * iv,
                               "run_ids": [f"{pid}-{k_run:06d}"], **({"on": on[i]} if i in on else {})})
                active_anom = None
                continue
        rid = f"{pid}-{k_run:06d}"
        k_run += 1
        if active_anom is not None:
            typ = active_anom["type"]
            active_anom["run_ids"].append(rid)
            if typ == "duration_spike":
                dur *= rng.uniform(2.5, 5) if sub else rng.uniform(4, 12)
            elif typ == "rows_zero":
                rows, status = 0.0, "success"
            elif typ == "rows_partial":
                rows *= rng.uniform(0.35, 0.6) if sub else rng.uniform(0.1, 0.45)
                status = "success"
            elif typ == "volume_spike":
                rows *= rng.uniform(2.5, 5) if sub else rng.uniform(3, 7)
                dur *= rng.uniform(1.5, 3)
                status = "success"
            elif typ == "failure_burst":
                status = "failed"
            elif typ == "late_run":
                start = slot + sched_shift + (iv * rng.uniform(0.1 if sub else 0.15, 0.5) if iv >= DAY
                                              else iv * rng.uniform(0.5, 0.85))
                status = "success"
            elif typ == "hung_run":
                timeout = 8 * 3600 if iv < DAY else DAY
                dur, status = timeout, "failed"
                blocked_until = start + timeout
            active_anom["left"] -= 1
            if active_anom["left"] <= 0:
                a = active_anom
                end = (start + dur if typ == "late_run" else
                       max(start + dur, start + iv) if typ == "hung_run" else start + iv)
                if cfg.get("dev_windows"):  # every window of the shared dev split ends one interval after
                    end = start + iv        # its (last) run's start, late and hung runs' too
                elif typ == "hung_run":  # until the next run after it
                    nxt = next((s for s in slots[i + 1:] if s + sched_shift >= blocked_until), blocked_until)
                    end = max(end, nxt + sched_shift + jitter)
                events.append({"event_id": f"{pid}-a{a['i']}", "pipeline_id": pid, "kind": "anomaly", "type": typ,
                               "start_unix": a["start"], "end_unix": end, "run_ids": a["run_ids"],
                               **({"on": on[a["i"]]} if a["i"] in on else {})})
                active_anom = None
        if status == "failed" and (active_anom is None or active_anom["type"] != "hung_run"):
            rows = 0.0
            if typ != "hung_run":
                dur *= rng.uniform(0.1, 1.0)
        runs.append({"pipeline_id": pid, "run_id": rid, "ts": iso(start), "ts_unix": round(start, 1),
                     "duration_s": round(dur, 1), "rows": round(rows), "status": status})
    meta = {"pipeline_id": pid, "schedule": kind, "cron": cron, "interval_s": iv, "n_runs": len(runs),
            "eval_start": iso(eval_start), "eval_start_unix": eval_start, "fp_tol_s": 3 * iv}
    if region:
        meta["calendar"] = region
    # what was drawn, for the analysis script (benchmarks/anomaly_why.py); not read by the detectors
    truth = {"pipeline_id": pid, "kind": kind, "noise": noise, "dur_noise": dur_noise, "alpha": alpha,
             "trend_rows_30d": math.exp(trend * 30 * DAY),
             "trend_dur_30d": math.exp((dur_trend + alpha * trend) * 30 * DAY),
             "month_end_bd": math.exp(me_bd), "region": region, "hod_amp": hod_amp, "weekend": math.exp(weekend),
             "monday": math.exp(monday)}
    for e in events:
        e["start"], e["end"] = iso(e["start_unix"]), iso(e["end_unix"])
    days_seen = sorted({dt.datetime.fromtimestamp(s, dt.UTC).date() for s in slots if s >= eval_start})
    specials = [{"pipeline_id": pid, "day": d.isoformat(), "kind": "holiday" if d in off else "month_end"}
                for d in days_seen if d in off or (me_bd and last_business_day(d, off))]
    return meta, runs, events, specials, truth


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="base")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pipelines", type=int, default=48)
    ap.add_argument("--noise", type=float, default=1.0,
                    help="scale the preset's rows and duration noise (0.5: about the shared dev split's, whose "
                         "learned noise is about half of these presets')")
    ap.add_argument("--dev-windows", action="store_true",
                    help="label late and hung runs' windows as the shared dev split does: one interval after "
                         "the run's start (by default a late run's ends at its completion, a hung run's at the "
                         "next run after it)")
    a = ap.parse_args(argv)
    cfg = {**PRESETS[a.preset], "noise": PRESETS[a.preset]["noise"] * a.noise, "dev_windows": a.dev_windows}
    rng = random.Random(f"{a.preset}-{a.seed}")
    metas, runs, events, specials, truths = [], [], [], [], []
    for k in range(a.pipelines):
        m, r, e, sp, tr = gen_pipeline(f"g{k:03d}", cfg["kinds"][k % len(cfg["kinds"])], rng, cfg)
        metas.append(m)
        truths.append(tr)
        runs += r
        events += e
        specials += sp
    runs.sort(key=lambda r: (r["ts_unix"], r["pipeline_id"]))
    os.makedirs(a.out, exist_ok=True)
    outputs = [("pipelines", metas), ("runs", runs), ("events", events)]
    drift = [("special", specials), ("truth", truths)] if a.preset.startswith("drift") else []
    for name, rows in outputs + drift:
        with open(os.path.join(a.out, f"{name}.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    n_anom = sum(e["kind"] == "anomaly" for e in events)
    print(f"{a.out}: {len(metas)} pipelines, {len(runs)} runs, {n_anom} anomalies, "
          f"{len(events) - n_anom} level shifts")


if __name__ == "__main__":
    main()
