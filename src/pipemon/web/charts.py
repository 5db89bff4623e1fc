"""Charts as inline SVG, drawn on the server: no charting library, no script, nothing to download.

A chart is runs over time (one dot a run), the learned normal band behind them (what the detector
expects at each run's time, at its alarm line), and the anomalies the detector reported ringed.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from pipemon.engine.detect.base import ALARM_SCORE, DEFAULT_SENSITIVITY
from pipemon.engine.detect.metric import MetricBaseline

W, H = 640, 170
PAD_L, PAD_R, PAD_T, PAD_B = 58, 10, 10, 24


@dataclass(frozen=True)
class Point:
    t: float
    y: float
    status: str          # run status: succeeded, failed, aborted, running
    label: str           # tooltip
    anomaly: bool = False


def band_of(detect: dict[str, Any] | None, metric: str,
            times: list[float]) -> list[tuple[float, float, float]]:
    """(t, lower, upper) of the learned normal range at each time, from the detector's saved baseline.

    The baseline is today's (seasonal by hour and weekday), evaluated at each past run's time; empty
    while the baseline is still cold."""
    if not detect or metric not in (detect.get("metrics") or {}):
        return []
    try:
        b = MetricBaseline.from_json(detect["metrics"][metric])
    except (KeyError, TypeError, ValueError):
        return []
    spec = detect.get("spec") or {}
    line = ALARM_SCORE / float(spec.get("sensitivity") or DEFAULT_SENSITIVITY)
    tz = spec.get("timezone") or "UTC"
    try:
        zone = None if tz in ("UTC", "Etc/UTC") else ZoneInfo(tz)
    except (KeyError, ValueError):
        zone = None
    out = []
    for t in times:
        lt = t
        if zone is not None:
            off = zone.utcoffset(_dt.datetime.fromtimestamp(t, zone).replace(tzinfo=None))
            lt = t + (off.total_seconds() if off else 0.0)
        r = b.band(lt, line)
        if r is not None and all(math.isfinite(v) for v in r):
            out.append((t, max(0.0, r[0]), r[2]))
    return out


def fmt_num(v: float) -> str:
    a = abs(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def fmt_secs(v: float) -> str:
    if v >= 3600:
        return f"{v / 3600:.3g} h"
    if v >= 60:
        return f"{v / 60:.3g} min"
    return f"{v:.3g} s"


def series(points: list[Point], band: list[tuple[float, float, float]], title: str, unit: str) -> Markup:
    """One chart. Failed runs are drawn as crosses, anomalies ringed; every mark has a tooltip."""
    fmt = fmt_secs if unit == "s" else fmt_num
    if not points:
        return Markup(f'<p class="muted">No {escape(title)} yet.</p>')
    ts = [p.t for p in points] + [b[0] for b in band]
    ys = [p.y for p in points] + [b[2] for b in band] + [b[1] for b in band]
    t0, t1 = min(ts), max(ts)
    if t1 - t0 < 1:
        t0, t1 = t0 - 1800, t1 + 1800
    # the band's top is clipped at 2.5x the largest run: a wide band must not flatten the runs
    y1 = min(max(ys), 2.5 * max(p.y for p in points)) * 1.08 or 1.0
    y0 = 0.0

    def x(t: float) -> float:
        return PAD_L + (t - t0) / (t1 - t0) * (W - PAD_L - PAD_R)

    def y(v: float) -> float:
        return H - PAD_B - (min(v, y1) - y0) / (y1 - y0) * (H - PAD_T - PAD_B)

    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)} over time" '
             f'preserveAspectRatio="none">']
    for frac in (0.0, 0.5, 1.0):
        v = y0 + frac * (y1 - y0)
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                     f'<text class="axis" x="{PAD_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">'
                     f'{escape(fmt(v))}</text>')
    for t, anchor in ((t0, "start"), (t1, "end")):
        label = _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%d %b %H:%M")
        parts.append(f'<text class="axis" x="{x(t):.1f}" y="{H - 6}" text-anchor="{anchor}">'
                     f'{label} UTC</text>')
    if len(band) >= 2:
        band = sorted(band)
        upper = " ".join(f"{x(t):.1f},{y(hi):.1f}" for t, _, hi in band)
        lower = " ".join(f"{x(t):.1f},{y(lo):.1f}" for t, lo, _ in reversed(band))
        parts.append(f'<polygon class="band" points="{upper} {lower}"><title>learned normal range</title>'
                     f'</polygon>')
    ok = sorted((p for p in points if p.status == "succeeded"), key=lambda p: p.t)
    if len(ok) >= 2:
        parts.append('<polyline class="line" points="' + " ".join(f"{x(p.t):.1f},{y(p.y):.1f}" for p in ok)
                     + '"/>')
    for p in points:
        cx, cy = x(p.t), y(p.y)
        tip = f"<title>{escape(p.label)}: {escape(fmt(p.y))}</title>"
        if p.status in ("failed", "aborted"):
            parts.append(f'<path class="fail" d="M{cx - 4:.1f},{cy - 4:.1f}l8,8m0,-8l-8,8">{tip}</path>')
        else:
            parts.append(f'<circle class="dot" cx="{cx:.1f}" cy="{cy:.1f}" r="2.5">{tip}</circle>')
        if p.anomaly:
            parts.append(f'<circle class="anomaly" cx="{cx:.1f}" cy="{cy:.1f}" r="7">{tip}</circle>')
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_bar(counts: dict[str, int], order: list[str]) -> Markup:
    """A team's pipelines by state as one horizontal bar (each part titled, so not colour alone)."""
    total = sum(counts.values()) or 1
    label = escape(", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)))
    parts = [f'<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" '
             f'aria-label="{label}">']
    at = 0.0
    for s in order:
        n = counts.get(s, 0)
        if not n:
            continue
        w = n / total * 100
        parts.append(f'<rect class="st-{s}" x="{at:.2f}" y="0" width="{w:.2f}" height="8">'
                     f'<title>{n} {s}</title></rect>')
        at += w
    parts.append("</svg>")
    return Markup("".join(parts))
