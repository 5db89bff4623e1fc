"""Prometheus `/metrics`: the fleet for Grafana, and pipemon's own health.

Per-pipeline series are labelled only by pipeline and team (and the current state), never by run ids or
error texts, so their number is bounded by the number of pipelines. Values are read from the engine's
in-memory state at scrape time: a scrape costs nothing on the ingest path.
"""
from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response

from pipemon.engine.health import HealthState

STATE_CODE = {HealthState.HEALTHY: 0, HealthState.UNKNOWN: 1, HealthState.PAUSED: 2, HealthState.DEGRADED: 3,
              HealthState.LATE: 4, HealthState.RUNNING_LONG: 5, HealthState.FAILING: 6}


class Metrics:
    def __init__(self, pm) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rejected = Counter("pipemon_events_rejected", "Requests rejected at ingest, by reason",
                                ["reason"], registry=self.registry)
        self.latency = Histogram("pipemon_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route", "status"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self.registry.register(_Collector(pm))

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _Collector:
    def __init__(self, pm) -> None:
        self.pm = pm

    def describe(self):
        return []

    def collect(self):
        pm = self.pm
        w = pm.worker
        by_source = CounterMetricFamily("pipemon_events_ingested", "Events stored, by front door", labels=["source"])
        for source, n in sorted(w.stats["by_source"].items()):
            by_source.add_metric([source], n)
        yield by_source
        yield CounterMetricFamily("pipemon_events_duplicate", "Retried events recognised and not stored again",
                                  value=w.stats["duplicates"])
        yield CounterMetricFamily("pipemon_writer_batches", "Transactions committed by the writer",
                                  value=w.stats["batches"])
        yield CounterMetricFamily("pipemon_writer_failed_batches", "Writer transactions that failed",
                                  value=w.stats["failed_batches"])
        last_tick = w.stats.get("last_tick_wall") or w.stats["started_wall"]  # never evaluated: lag grows
        yield GaugeMetricFamily("pipemon_evaluation_lag_seconds", "Seconds since the clock-driven evaluation "
                                "last completed (lateness is found no later than this)", value=time.time() - last_tick)
        yield GaugeMetricFamily("pipemon_writer_queue", "Requests waiting for the writer", value=w.queue_depth())
        health = w.health()
        yield GaugeMetricFamily("pipemon_writer_up", "1 while the writer runs and has its database, else 0",
                                value=1 if health.alive and health.down_for is None else 0)
        yield CounterMetricFamily("pipemon_writer_outages", "Times the writer lost its database and reconnected",
                                  value=w.stats["outages"])
        yield CounterMetricFamily("pipemon_writer_timed_out", "Requests answered 503 at their deadline",
                                  value=w.stats["timed_out"])
        yield CounterMetricFamily("pipemon_writer_rejected", "Requests whose input the database refused (422)",
                                  value=w.stats["rejected"])

        d = pm.deliverer
        if d is not None:
            sent = CounterMetricFamily("pipemon_notifications", "Notification deliveries by receiver and outcome "
                                       "(sent; retried: a transient failure; failed: permanent or given up)",
                                       labels=["receiver", "outcome"])
            streak = GaugeMetricFamily("pipemon_receiver_consecutive_failures",
                                       "Deliveries to a receiver that failed in a row", labels=["receiver"])
            for name in sorted(d.receivers):
                c = d.counts[name]
                for outcome in ("sent", "retried", "failed"):
                    sent.add_metric([name, outcome], c[outcome])
                streak.add_metric([name], d.failing_streak(name))
            yield sent
            yield streak
        labels = ["pipeline", "team"]
        state = GaugeMetricFamily("pipemon_pipeline_state", "1 for the pipeline's current health state",
                                  labels=labels + ["state"])
        code = GaugeMetricFamily("pipemon_pipeline_state_code", "Health as a number: 0 healthy, 1 unknown, "
                                 "2 paused, 3 degraded, 4 late, 5 running_long, 6 failing", labels=labels)
        success = GaugeMetricFamily("pipemon_pipeline_last_success_timestamp_seconds",
                                    "Unix time the last successful run ended", labels=labels)
        duration = GaugeMetricFamily("pipemon_pipeline_last_duration_seconds", "Duration of the last run",
                                     labels=labels)
        rows = GaugeMetricFamily("pipemon_pipeline_last_rows", "Rows written by the last run", labels=labels)
        fails = GaugeMetricFamily("pipemon_pipeline_consecutive_failures", "Failed runs in a row", labels=labels)
        fleet = GaugeMetricFamily("pipemon_pipelines", "Pipelines by health state", labels=["state"])
        counts = dict.fromkeys(HealthState, 0)
        teams = {k: rec.team or "unassigned" for k, rec in list(w.pipelines.items())}
        for key, h in list(pm.evaluation.engine.health.items()):
            lv = [key, teams.get(key, "unassigned")]
            counts[h.state] += 1
            state.add_metric(lv + [h.state.value], 1)
            code.add_metric(lv, STATE_CODE[h.state])
            if h.last_success is not None:
                success.add_metric(lv, h.last_success)
            last = h.last_run or {}
            if last.get("duration") is not None:
                duration.add_metric(lv, last["duration"])
            if last.get("rows") is not None:
                rows.add_metric(lv, last["rows"])
            fails.add_metric(lv, h.consecutive_failures)
        for s, n in counts.items():
            fleet.add_metric([s.value], n)
        yield from (state, code, success, duration, rows, fails, fleet)


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


async def metrics_endpoint(request: Request) -> Response:
    return request.app.state.metrics.render()
