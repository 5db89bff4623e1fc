"""Prometheus `/metrics`: the fleet for Grafana, and pipemon's own health.

Per-pipeline series are labelled only by pipeline and team (and the current state), never by run ids or
error texts, so their number is bounded by the number of pipelines. Values are read from the engine's
in-memory state at scrape time: a scrape costs nothing on the ingest path.

At fleet scale (20,000 pipelines: ~140,000 lines, ~10 MB) a scrape must not stall the event loop. So, as
kube-state-metrics' metrics_store does, each pipeline's lines are rendered once, when its values change,
and kept as bytes (`FleetText`); a scrape compares each pipeline's few values with the cached ones and
concatenates. The handler is a plain `def` (it runs in the threadpool, not on the loop), and answers
gzip-compressed when the scraper asks (zlib releases the GIL while it compresses). `LoopLag` probes the
loop every 100 ms and exports the worst lag seen since the previous scrape, so a stall is visible.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response

from pipemon.engine.health import HealthState

# 2 was `paused`: a silence no longer replaces the state (see the `muted` label), the code is not reused
STATE_CODE = {HealthState.HEALTHY: 0, HealthState.UNKNOWN: 1, HealthState.DEGRADED: 3,
              HealthState.LATE: 4, HealthState.RUNNING_LONG: 5, HealthState.FAILING: 6}
LAG_PROBE_S = 0.1
GZIP_LEVEL = 1  # ~6x smaller for these texts; level 6 is ~3x slower for a few % more
DEFAULT_METRICS_CACHE_BYTES = 64 << 20


class Metrics:
    def __init__(self, pm, cache_bytes: int | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rejected = Counter("pipemon_events_rejected", "Requests rejected at ingest, by reason",
                                ["reason"], registry=self.registry)
        self.latency = Histogram("pipemon_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route", "status"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self.lag = LoopLag()
        self.gc = GcPauses()
        self.registry.register(_Collector(pm, self.lag, self.gc))
        if getattr(pm, "node", None) is not None:  # a cluster role: lag, outbox, members (cluster/metrics.py)
            from pipemon.cluster.metrics import ClusterCollector
            self.registry.register(ClusterCollector(pm.node))
        if cache_bytes is None:
            cache = getattr(pm.settings, "cache", None)
            cache_bytes = getattr(cache, "metrics", DEFAULT_METRICS_CACHE_BYTES)
        self.fleet = FleetText(cache_bytes)
        self.pm = pm
        self._lock = threading.Lock()  # two scrapes at once render one after the other (FleetText is shared)

    def render_bytes(self) -> bytes:
        """The whole exposition. Call it off the event loop: it is O(pipelines)."""
        pm = self.pm
        w = pm.writer
        teams = {k: rec.team or "unassigned" for k, rec in list(w.pipelines.items())}
        with self._lock:
            fleet = self.fleet.render(list(pm.health.judge.health.items()), teams)
        return generate_latest(self.registry) + fleet

    def render(self, accept_encoding: str = "") -> Response:
        body = self.render_bytes()
        headers = {"Vary": "Accept-Encoding"}
        if accepts_gzip(accept_encoding):
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=headers)


def accepts_gzip(header: str) -> bool:
    """`Accept-Encoding` names gzip (or *) with a non-zero quality."""
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


class LoopLag:
    """How late the event loop wakes a sleeper: a probe sleeps `interval` again and again and records how
    much later than asked it woke. `take()` returns the worst since the previous call (a scrape)."""

    def __init__(self, interval: float = LAG_PROBE_S) -> None:
        self.interval = interval
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(self.interval)
            lag = loop.time() - t0 - self.interval
            self.worst = max(self.worst, lag)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        self._task = loop.create_task(self._probe(), name="pipemon-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        other = task.get_loop()
        if other is not asyncio.get_running_loop():  # started under another loop (a test client's)
            if not other.is_closed():
                other.call_soon_threadsafe(task.cancel)
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return max(0.0, worst)


class GcPauses:
    """The longest pause of CPython's cyclic garbage collector (it stops every thread) since the previous
    `take()`: at fleet scale a full collection walks every live object, ~47 of them a pipeline."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.worst = max(self.worst, time.perf_counter() - self._t0)

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_FAMILIES: tuple[tuple[str, str], ...] = (
    ("pipemon_pipeline_state", ("1 for the pipeline's current health state; muted=\"true\" while a silence "
                                "or maintenance window mutes its notifications")),
    ("pipemon_pipeline_state_code", ("Health as a number: 0 healthy, 1 unknown, 3 degraded, "
                                     "4 late, 5 running_long, 6 failing")),
    ("pipemon_pipeline_last_success_timestamp_seconds", "Unix time the last successful run ended"),
    ("pipemon_pipeline_last_duration_seconds", "Duration of the last run"),
    ("pipemon_pipeline_last_rows", "Rows written by the last run"),
    ("pipemon_pipeline_consecutive_failures", "Failed runs in a row"),
)
_HEADERS = tuple(f"# HELP {n} {h}\n# TYPE {n} gauge\n".encode() for n, h in _FAMILIES)
_ENTRY_OVERHEAD = 420  # bytes: the dict entry, two tuples, six bytes objects' headers (measured, 64-bit)

Signature = tuple[str, HealthState, Any, Any, Any, int, bool]
_NO_RUN: dict[str, Any] = {}


def _lines(key: str, sig: Signature) -> tuple[bytes, ...]:
    team, state, success, duration, rows, fails, muted = sig
    lv = f'{{pipeline="{_esc(key)}",team="{_esc(team)}"}}'
    lvs = (f'{{pipeline="{_esc(key)}",team="{_esc(team)}",state="{state.value}",'
           f'muted="{"true" if muted else "false"}"}}')
    n = [f for f, _ in _FAMILIES]
    return (f"{n[0]}{lvs} 1.0\n".encode(),
            f"{n[1]}{lv} {floatToGoString(STATE_CODE[state])}\n".encode(),
            f"{n[2]}{lv} {floatToGoString(success)}\n".encode() if success is not None else b"",
            f"{n[3]}{lv} {floatToGoString(duration)}\n".encode() if duration is not None else b"",
            f"{n[4]}{lv} {floatToGoString(rows)}\n".encode() if rows is not None else b"",
            f"{n[5]}{lv} {floatToGoString(fails)}\n".encode())


class FleetText:
    """Each pipeline's lines of the six per-pipeline families, rendered when its values change and kept as
    bytes, within `max_bytes` (estimated: the text plus a fixed overhead per entry). Past the budget a
    pipeline's lines are rendered at every scrape instead: slower, never wrong, never more memory."""

    def __init__(self, max_bytes: int = DEFAULT_METRICS_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.renders = 0  # pipelines rendered (not served from the cache), for tests and benchmarks
        self._rows: dict[str, tuple[Signature, tuple[bytes, ...], int]] = {}

    def render(self, health: Iterable[tuple[str, Any]], teams: dict[str, str]) -> bytes:
        rows = self._rows
        keep: dict[str, tuple[Signature, tuple[bytes, ...], int]] = {}
        entries: list[tuple[Signature, tuple[bytes, ...], int]] = []
        used, budget = 0, self.max_bytes
        counts = dict.fromkeys(HealthState, 0)
        for key, h in health:
            last = h.last_run or _NO_RUN
            sig: Signature = (teams.get(key, "unassigned"), h.state, h.last_success, last.get("duration"),
                              last.get("rows"), h.consecutive_failures, bool(h.muted))
            counts[h.state] += 1
            entry = rows.get(key)
            if entry is None or entry[0] != sig:
                self.renders += 1
                lines = _lines(key, sig)
                entry = (sig, lines, _ENTRY_OVERHEAD + sum(map(len, lines)))
            entries.append(entry)
            if used + entry[2] <= budget:
                keep[key] = entry
                used += entry[2]
        self._rows, self.bytes = keep, used  # pipelines gone from the engine leave the cache here
        out = []
        for i, header in enumerate(_HEADERS):
            out.append(header)
            out.append(b"".join([e[1][i] for e in entries]))
        out.append(b"# HELP pipemon_pipelines Pipelines by health state\n# TYPE pipemon_pipelines gauge\n")
        out += [f'pipemon_pipelines{{state="{s.value}"}} {floatToGoString(n)}\n'.encode()
                for s, n in counts.items()]
        return b"".join(out)


class _Collector:
    def __init__(self, pm, lag: LoopLag, gc_pauses: GcPauses) -> None:
        self.pm = pm
        self.lag = lag
        self.gc = gc_pauses

    def describe(self):
        return []

    def collect(self):
        pm = self.pm
        w = pm.writer
        by_source = CounterMetricFamily("pipemon_events_ingested", "Events stored, by front door",
                                        labels=["source"])
        for source, n in sorted(w.stats["by_source"].items()):
            by_source.add_metric([source], n)
        yield by_source
        yield CounterMetricFamily("pipemon_events_duplicate",
                                  "Retried events recognised and not stored again",
                                  value=w.stats["duplicates"])
        yield CounterMetricFamily("pipemon_writer_batches", "Transactions committed by the writer",
                                  value=w.stats["batches"])
        yield CounterMetricFamily("pipemon_writer_failed_batches", "Writer transactions that failed",
                                  value=w.stats["failed_batches"])
        last_tick = w.stats.get("last_tick_wall") or w.stats["started_wall"]  # never evaluated: lag grows
        yield GaugeMetricFamily("pipemon_evaluation_lag_seconds", "Seconds since the clock-driven evaluation "
                                "last completed (lateness is found no later than this)",
                                value=time.time() - last_tick)
        yield GaugeMetricFamily("pipemon_writer_queue", "Requests waiting for the writer",
                                value=w.queue_depth())
        health = w.health()
        yield GaugeMetricFamily("pipemon_writer_up", "1 while the writer runs and has its database, else 0",
                                value=1 if health.alive and health.down_for is None else 0)
        yield CounterMetricFamily("pipemon_writer_outages",
                                  "Times the writer lost its database and reconnected",
                                  value=w.stats["outages"])
        yield CounterMetricFamily("pipemon_writer_timed_out", "Requests answered 503 at their deadline",
                                  value=w.stats["timed_out"])
        yield CounterMetricFamily("pipemon_writer_rejected",
                                  "Requests whose input the database refused (422)",
                                  value=w.stats["rejected"])
        yield GaugeMetricFamily("pipemon_event_loop_lag_seconds", "Worst event-loop lag a probe every "
                                f"{LAG_PROBE_S:g} s saw since the previous scrape "
                                "(a stall of every request)", value=self.lag.take())
        yield GaugeMetricFamily("pipemon_gc_pause_seconds", "Longest pause of the garbage collector (it "
                                "stops every thread) since the previous scrape", value=self.gc.take())
        reloader = getattr(pm, "reloader", None)
        if reloader is not None:  # each team's config file: in effect or rejected (pipemon.reload)
            yield from reloader.metric_families()

        d = pm.deliverer
        if d is not None:
            sent = CounterMetricFamily("pipemon_notifications", "Notification deliveries by receiver and "
                                       "outcome (sent; retried: a transient failure; failed: permanent "
                                       "or given up)", labels=["receiver", "outcome"])
            streak = GaugeMetricFamily("pipemon_receiver_consecutive_failures",
                                       "Deliveries to a receiver that failed in a row", labels=["receiver"])
            for name in sorted(d.receivers):
                c = d.counts[name]
                for outcome in ("sent", "retried", "failed"):
                    sent.add_metric([name, outcome], c[outcome])
                streak.add_metric([name], d.failing_streak(name))
            yield sent
            yield streak


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class TimingMiddleware:
    """Request latency by route template (bounded labels: never the raw path)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"  # a client invents methods
            self.metrics.latency.labels(method, route, str(status[0])).observe(time.perf_counter() - t0)


def metrics_endpoint(request: Request) -> Response:
    """A plain `def`: Starlette runs it in the threadpool, so a scrape never holds the event loop."""
    return request.app.state.metrics.render(request.headers.get("accept-encoding", ""))
