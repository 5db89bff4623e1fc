"""What every front door accepts: lengths, counts, ranges and nesting, checked in pure code before the
database sees anything. The same rules for the native, OpenLineage and ping doors (the README's table).

Strings that become keys or indexed columns are limited in bytes (UTF-8), not characters: PostgreSQL
refuses a B-tree entry over ~2,700 bytes (a third of a page), and `pipelines.key` (namespace/name),
`runs (pipeline_id, run_id)` and `lineage (pipeline_id, dataset, role)` must stay well under it, so an
event that could never be stored is a 422 naming the field instead of a database error.

Each check returns the problems it found (an empty list when all is well), so a door collects them all
and names every bad field of an event at once.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from pipemon.errors import Problem
from pipemon.model import Event

MAX_ID_BYTES = 1_000         # namespace, name, run id, event id, parent/root ids, team, integration
MAX_DATASET_BYTES = 2_000    # a dataset id (`namespace/name` for OpenLineage)
MAX_DATASETS = 1_000         # inputs, and outputs, per event
MAX_METRICS = 100            # custom metrics per event
MAX_METRIC_NAME_BYTES = 200
MAX_NUMBER = float(2**63)    # |metric|, rows, bytes: within int64, so sums and squares stay finite
MAX_DEPTH = 64               # JSON nesting, the batch array included
MAX_FUTURE_S = 86_400.0      # an event time at most a day ahead of the server's clock
_Y2K = 946_684_800.0         # 2000-01-01: a number that is a time after this in ms was meant as seconds

_KEYS = re.compile(rb'"[^"]*"')  # a quoted run, once escapes are gone (see nesting_depth)
_STRUCTURAL = bytes.maketrans(b"[{]}", b"(())")
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'"[]{}')


def nesting_depth(raw: bytes, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of a JSON text, or limit + 1 as soon as it is known to be deeper.

    In C-speed passes, never one Python step per byte: escaped backslashes and quotes go, then every
    byte but quotes and brackets; strings (now plain quoted runs) go with the brackets inside them;
    each pass of removing `()` then peels exactly one level. Malformed JSON gives some answer and is
    rejected by the decoder anyway."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return limit  # cannot be deeper; the exact figure is not needed
    s = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(_STRUCTURAL, _NOT_STRUCTURAL)
    s = s.replace(b'""', b"")  # the common case: strings without brackets
    if b'"' in s:
        s = _KEYS.sub(b"", s)
    depth = 0
    while s:
        depth += 1
        if depth > limit:
            return depth
        peeled = s.replace(b"()", b"")
        if len(peeled) == len(s):
            return depth  # unbalanced: malformed, the decoder will say so
        s = peeled
    return depth


def too_deep(raw: bytes, loc: str) -> list[Problem]:
    return [deep(loc)] if nesting_depth(raw) > MAX_DEPTH else []


def deep(loc: str) -> Problem:
    return Problem(loc, f"nested deeper than {MAX_DEPTH} levels of arrays and objects; that is the limit")


def ident(value: str | None, loc: str, limit: int = MAX_ID_BYTES) -> list[Problem]:
    """An identifier: at most `limit` bytes in UTF-8."""
    if value is None or len(value) * 4 <= limit:  # fast path: cannot be over, whatever the characters
        return []
    n = len(value.encode("utf-8", errors="surrogatepass"))
    if n > limit:
        return [Problem(loc, f"is {n:,} bytes long (UTF-8); the limit is {limit:,} bytes")]
    return []


def datasets(names: Iterable[str], loc: str) -> list[Problem]:
    names = list(names)
    if len(names) > MAX_DATASETS:
        return [Problem(loc, f"{len(names):,} datasets; the limit is {MAX_DATASETS:,} per event")]
    return [p for i, n in enumerate(names) for p in ident(n, f"{loc}[{i}]", MAX_DATASET_BYTES)]


def number(value: float | None, loc: str, *, lo: float = -MAX_NUMBER) -> list[Problem]:
    """A count or measure: finite, within int64's range, and at least `lo`."""
    if value is None:
        return []
    if not math.isfinite(value):
        return [Problem(loc, f"must be a finite number, got {value!r}")]
    if abs(value) > MAX_NUMBER:
        return [Problem(loc, f"{value:g} is out of range; the limit is ±2^63 ({MAX_NUMBER:.4g})")]
    if value < lo:
        return [Problem(loc, f"must be >= {lo:g}, got {value!r}")]
    return []


def metrics(values: Mapping[str, float] | None, loc: str) -> list[Problem]:
    if not values:
        return []
    if len(values) > MAX_METRICS:
        return [Problem(loc, f"{len(values):,} metrics; the limit is {MAX_METRICS:,} per event")]
    short = MAX_METRIC_NAME_BYTES // 4
    if (all(0 < len(k) <= short and -MAX_NUMBER <= v <= MAX_NUMBER for k, v in values.items())
            and values.get("rows", 0.0) >= 0 and values.get("bytes", 0.0) >= 0):
        return []  # the common case, at a glance (NaN fails every comparison and takes the long way)
    out: list[Problem] = []
    for k, v in values.items():
        if not k:
            out.append(Problem(loc, "a metric name must not be empty"))
        out += ident(k, f"{loc}.{k[:50]}", MAX_METRIC_NAME_BYTES)
        out += number(v, f"{loc}.{k[:50]}", lo=0.0 if k in ("rows", "bytes") else -MAX_NUMBER)
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def event_time(t: float, loc: str, now: float, horizon: float = MAX_FUTURE_S, *, numeric: bool = True
               ) -> list[Problem]:
    """A time in unix seconds from 1970-01-01 to a day after `now`. A number (`numeric`: sent as a
    number, not a string) that would be a time of this century in milliseconds (or micro-, nanoseconds)
    gets a message that says so: a common client bug."""
    if not math.isfinite(t):
        return [Problem(loc, f"must be a finite time, got {t!r}")]
    if t < 0:
        return [Problem(loc, "is before 1970-01-01T00:00:00Z (unix time 0)")]
    if t <= now + horizon:
        return []
    for unit, scale in (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)):
        if numeric and _Y2K <= t / scale <= now + horizon:
            return [Problem(loc, f"{t:.0f} looks like unix {unit}, not seconds: send {t / scale:.3f} "
                                 f"({_iso(t / scale)}) or an ISO 8601 time")]
    what = _iso(t) if t < 253_402_300_800 else f"{t:g} seconds"  # up to year 9999
    return [Problem(loc, f"{what} is more than {horizon / 3600:g} h in the future (server time {_iso(now)})")]


_SHORT_ID = MAX_ID_BYTES // 4  # characters: UTF-8 takes at most 4 bytes a character
_SHORT_DATASET = MAX_DATASET_BYTES // 4


def plainly_within(ev: Event, now: float, horizon: float = MAX_FUTURE_S) -> bool:
    """True when no limit of event_problems can fail for this event, seen at a glance (lengths in
    characters, plain comparisons: NaN fails them and takes the long way): the hot path of a door skips
    the field-by-field check, and the naming of where each field came from. False says nothing: check."""
    if not (0.0 <= ev.time <= now + horizon and ev.time != math.inf):
        return False
    if ev.nominal_time is not None and not (0.0 <= ev.nominal_time <= now + horizon
                                            and ev.nominal_time != math.inf):
        return False
    for v in (ev.namespace, ev.name, ev.run_id, ev.team, ev.integration):
        if v is not None and len(v) > _SHORT_ID:
            return False
    for ref in (ev.parent, ev.root):
        if ref is not None and max(len(ref.namespace), len(ref.name), len(ref.run_id)) > _SHORT_ID:
            return False
    for names in (ev.inputs, ev.outputs):
        if len(names) > MAX_DATASETS or any(len(n) > _SHORT_DATASET for n in names):
            return False
    for n in (ev.rows, ev.bytes):
        if n is not None and not 0.0 <= n <= MAX_NUMBER:
            return False
    return not ev.metrics  # metrics: the full check (the native door checks them itself)


def event_problems(ev: Event, loc: Mapping[str, str], now: float,
                   horizon: float = MAX_FUTURE_S) -> list[Problem]:
    """Every limit on a normalized event, whatever door it came through. `loc` names, for this door, where
    each of the event's fields came from (e.g. `namespace` -> `$.job.namespace`, `parent.run_id` ->
    `$.run.facets.parent.run.runId`); a field without an entry is not checked (the door has none)."""
    out: list[Problem] = []
    for f in ("namespace", "name", "run_id", "team", "integration"):
        if f in loc:
            out += ident(getattr(ev, f), loc[f])
    for f, ref in (("parent", ev.parent), ("root", ev.root)):
        if ref is not None:
            for part in ("namespace", "name", "run_id"):
                if f"{f}.{part}" in loc:
                    out += ident(getattr(ref, part), loc[f"{f}.{part}"])
    for f in ("inputs", "outputs"):
        if f in loc:
            out += datasets(getattr(ev, f), loc[f])
    for f in ("rows", "bytes"):
        if f in loc:
            out += number(getattr(ev, f), loc[f], lo=0.0)
    if "metrics" in loc:
        out += metrics(ev.metrics, loc["metrics"])
    if "time" in loc:
        out += event_time(ev.time, loc["time"], now, horizon, numeric=False)  # ISO text, or the clock
    if ev.nominal_time is not None and "nominal_time" in loc:
        out += event_time(ev.nominal_time, loc["nominal_time"], now, horizon, numeric=False)
    return out
