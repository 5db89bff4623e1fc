"""`GET /metrics` scraped and parsed as Prometheus does, on SQLite and PostgreSQL: real values after real
requests, labels that stay bounded however many runs arrive, and the Grafana dashboard in contrib/grafana
checked against the metrics the service really exports."""
from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import T0

DASHBOARD = Path(__file__).resolve().parents[2] / "contrib" / "grafana" / "pipemon.json"
STATES = {"healthy": 0, "unknown": 1, "degraded": 3, "late": 4, "running_long": 5, "failing": 6}
EVENTS_ROUTE = "/api/v1/events"


def ev(pipeline, run_id, type_, t, **kw):
    return {"pipeline": pipeline, "run_id": run_id, "type": type_, "event_time": t, **kw}


class Scrape:
    """One scrape of /metrics, parsed by prometheus_client's own text parser."""

    def __init__(self, client):
        r = client.get("/metrics")
        assert r.status_code == 200, r.text
        self.content_type = r.headers["content-type"]
        self.families = {f.name: f for f in text_string_to_metric_families(r.text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def find(self, name: str, **labels: str) -> list:
        return [s for s in self.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        found = self.find(name, **labels)
        assert len(found) == 1, f"{name}{labels}: {found}"
        return found[0].value

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.find(name, **labels):
            out[s.labels[label]] = out.get(s.labels[label], 0) + s.value
        return out

    def series(self) -> list[tuple[str, tuple]]:
        return [(s.name, tuple(sorted(s.labels.items()))) for s in self.samples]


def route_templates(routes):
    """The path templates of the app's routes, through included routers."""
    for r in routes:
        if getattr(r, "path", None):
            yield r.path
        yield from route_templates(getattr(r, "routes", None) or getattr(getattr(r, "original_router", None),
                                                                        "routes", None) or [])


def populate(client, clock) -> None:
    """A success, a failure, a run still running, a ping, a retried batch, and rejected requests of each
    kind."""
    good = [ev("etl/good", "g1", "START", T0, team="data", event_id="g1-start"),
            ev("etl/good", "g1", "COMPLETE", T0 + 42, team="data", event_id="g1-end", metrics={"rows": 1234})]
    assert client.post(EVENTS_ROUTE, json=good).json() == {"accepted": 2, "duplicates": 0}
    assert client.post(EVENTS_ROUTE, json=good).json() == {"accepted": 0, "duplicates": 2}      # a retry
    r = client.post(EVENTS_ROUTE, json=[ev("etl/bad", "b1", "START", T0, team="data"),
                                        ev("etl/bad", "b1", "FAIL", T0 + 7, team="data", error="boom")])
    assert r.json() == {"accepted": 2, "duplicates": 0}
    assert client.post(EVENTS_ROUTE, json=ev("etl/running", "x1", "START", T0 + 10)).status_code == 200
    assert client.get("/ping/cron/backup/start").status_code == 200
    clock.advance(3)
    assert client.get("/ping/cron/backup").status_code == 200
    rejected = [
        (b"{not json", {}, 400),
        (b"", {}, 400),
        (json.dumps(ev("etl/good", "g2", "NOPE", T0)).encode(), {}, 422),
        (json.dumps(ev("etl/good", "g2", "START", T0, log="x" * (2 << 20))).encode(), {}, 413),
        (b"{}", {"Content-Encoding": "br"}, 415),
    ]
    for body, headers, status in rejected:
        r = client.post(EVENTS_ROUTE, content=body, headers={"Content-Type": "application/json", **headers})
        assert r.status_code == status, r.text


def test_a_scrape_carries_the_real_values(client, clock):
    populate(client, clock)
    assert client.get("/api/v1/pipelines/etl%2Fgood").status_code == 200
    m = Scrape(client)

    media_type, *params = [p.strip() for p in m.content_type.split(";")]
    assert media_type == "text/plain" and "charset=utf-8" in params
    assert any(p in ("version=0.0.4", "version=1.0.0") for p in params), m.content_type

    # the failed pipeline: failing, code 6, and that is its only state series
    assert m.value("pipemon_pipeline_state", pipeline="etl/bad", team="data", state="failing") == 1
    assert len(m.find("pipemon_pipeline_state", pipeline="etl/bad")) == 1
    assert m.value("pipemon_pipeline_state_code", pipeline="etl/bad", team="data") == 6
    assert m.value("pipemon_pipeline_consecutive_failures", pipeline="etl/bad") == 1
    assert m.value("pipemon_pipeline_last_duration_seconds", pipeline="etl/bad") == 7
    assert not m.find("pipemon_pipeline_last_success_timestamp_seconds", pipeline="etl/bad")
    # the good one: what was sent
    assert m.value("pipemon_pipeline_state", pipeline="etl/good", team="data", state="healthy") == 1
    assert m.value("pipemon_pipeline_state_code", pipeline="etl/good") == 0
    assert m.value("pipemon_pipeline_last_duration_seconds", pipeline="etl/good", team="data") == 42
    assert m.value("pipemon_pipeline_last_rows", pipeline="etl/good", team="data") == 1234
    assert m.value("pipemon_pipeline_last_success_timestamp_seconds", pipeline="etl/good") == T0 + 42
    assert m.value("pipemon_pipeline_consecutive_failures", pipeline="etl/good") == 0
    # a pipeline nobody claimed is "unowned" (pipemon.ownership), as in /api/v1/summary
    assert m.value("pipemon_pipeline_state_code", pipeline="etl/running", team="unowned") == 1  # unknown

    # every state series agrees with its code and with the API
    items = client.get("/api/v1/pipelines").json()["items"]
    assert {p["id"] for p in items} == {"etl/good", "etl/bad", "etl/running", "cron/backup"}
    for p in items:
        [s] = m.find("pipemon_pipeline_state", pipeline=p["id"])
        assert s.value == 1 and s.labels["state"] == p["state"]
        assert s.labels["team"] == p["team"]
        assert m.value("pipemon_pipeline_state_code", pipeline=p["id"]) == STATES[p["state"]]

    # the fleet: one series per state, summing to the number of pipelines, matching the per-pipeline series
    fleet = m.by("pipemon_pipelines", "state")
    assert set(fleet) == set(STATES)
    assert sum(fleet.values()) == len(items) == 4
    per_state = Counter(x.labels["state"] for x in m.find("pipemon_pipeline_state"))
    assert fleet == {s: per_state[s] for s in STATES}

    # service counters
    assert m.by("pipemon_events_ingested_total", "source") == {"native": 5, "ping": 2}
    assert m.value("pipemon_events_duplicate_total") == 2
    assert m.by("pipemon_events_rejected_total", "reason") == {
        "malformed_json": 2, "invalid_event": 1, "body_too_large": 1, "unsupported_media_type": 1}
    assert m.value("pipemon_writer_batches_total") >= 4
    assert m.value("pipemon_writer_failed_batches_total") == 0
    assert m.value("pipemon_writer_queue") == 0
    assert m.value("pipemon_evaluation_lag_seconds") >= 0

    # latency: observed per route template and status, never per raw path
    counts = m.by("pipemon_http_request_duration_seconds_count", "status", method="POST", route=EVENTS_ROUTE)
    assert counts == {"200": 4, "400": 2, "422": 1, "413": 1, "415": 1}
    for status, n in counts.items():
        labels = {"method": "POST", "route": EVENTS_ROUTE, "status": status}
        buckets = sorted(((float(s.labels["le"]), s.value)
                          for s in m.find("pipemon_http_request_duration_seconds_bucket", **labels)))
        assert buckets[-1] == (float("inf"), n)
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
        assert m.value("pipemon_http_request_duration_seconds_sum", **labels) > 0
    assert m.value("pipemon_http_request_duration_seconds_count", method="GET", status="200",
                   route="/api/v1/pipelines/{pipeline_id:path}") == 1
    assert m.value("pipemon_http_request_duration_seconds_count", method="GET", status="200",
                   route="/ping/{namespace}/{name}/{signal}") == 1
    templates = set(route_templates(client.app.routes)) | {"unmatched"}
    routes = {s.labels["route"] for s in m.find("pipemon_http_request_duration_seconds_count")}
    assert routes <= templates, routes - templates
    assert not any(x in r for r in routes for x in ("etl", "%2F", "cron/backup"))


def test_series_do_not_grow_with_runs(client, clock):
    """50 runs with distinct run ids and error texts: the same series, and none of them in any label."""
    tokens: list[str] = []   # the unique part of every run id and error text
    failures = [0]

    def one_run(i: int, ok: bool) -> None:
        run_token, error_token = uuid.uuid4().hex, uuid.uuid4().hex
        tokens.extend([run_token, error_token])
        run_id, t = f"run-{run_token}", T0 + 100 * i
        if ok:
            end = ev("etl/flaky", run_id, "COMPLETE", t + 5, team="data", metrics={"rows": i})
            failures[0] = 0
        else:
            end = ev("etl/flaky", run_id, "FAIL", t + 5, team="data",
                     error={"message": f"relation tmp_{error_token} does not exist (#{i})", "type": f"E{i}"})
            failures[0] += 1
        r = client.post(EVENTS_ROUTE, json=[ev("etl/flaky", run_id, "START", t, team="data"), end])
        assert r.status_code == 200 and r.json()["accepted"] == 2

    one_run(0, ok=True)
    one_run(1, ok=False)
    Scrape(client)                       # so the series of /metrics' own request exists in both scrapes below
    before = Scrape(client)
    for i in range(2, 50):
        one_run(i, ok=i % 7 == 3)          # the last ones fail
    after = Scrape(client)

    def per_pipeline(s: Scrape) -> Counter:
        return Counter(name for name, labels in s.series()
                       if name.startswith("pipemon_pipeline_") or name == "pipemon_pipelines")

    assert per_pipeline(after) == per_pipeline(before)
    assert len(after.find("pipemon_pipeline_state", pipeline="etl/flaky")) == 1
    assert after.value("pipemon_pipeline_state", pipeline="etl/flaky", team="data", state="failing") == 1
    assert after.value("pipemon_pipeline_consecutive_failures", pipeline="etl/flaky") == failures[0] == 4
    # the whole exposition: the same series, only the values moved
    assert sorted(after.series()) == sorted(before.series())
    assert after.value("pipemon_http_request_duration_seconds_count",
                       method="POST", route=EVENTS_ROUTE, status="200") == 50
    values = {v for s in after.samples for v in s.labels.values()}
    leaked = [v for v in values if any(tok[:12] in v for tok in tokens)]
    assert not leaked, leaked[:3]


# --- the Grafana dashboard ------------------------------------------------------------------------------

METRIC = re.compile(r"\bpipemon_[a-z0-9_]+")
SUFFIX = re.compile(r"_(bucket|count|sum|total)$")
MUST_SHOW = {  # every family the dashboard is meant to chart
    "pipemon_pipelines", "pipemon_pipeline_state", "pipemon_pipeline_state_code",
    "pipemon_pipeline_last_success_timestamp_seconds", "pipemon_pipeline_last_duration_seconds",
    "pipemon_pipeline_last_rows", "pipemon_pipeline_consecutive_failures", "pipemon_events_ingested",
    "pipemon_events_rejected", "pipemon_http_request_duration_seconds", "pipemon_evaluation_lag_seconds",
    "pipemon_writer_queue",
}


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict]):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def dashboard_queries(d: dict) -> list[str]:
    """Every PromQL expression: the panels' targets and the template variables' queries."""
    out = [t["expr"] for p in all_panels(d["panels"]) for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def test_the_dashboard_is_a_valid_grafana_dashboard():
    d = load_dashboard()
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int) and 36 <= d["schemaVersion"] <= 41
    [ds_input] = [i for i in d["__inputs"] if i["name"] == "DS_PROMETHEUS"]
    assert ds_input["type"] == "datasource" and ds_input["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    team_q, pipeline_q = (variables[n]["query"]["query"] for n in ("team", "pipeline"))
    assert team_q.replace(" ", "") == "label_values(pipemon_pipeline_state,team)"
    assert pipeline_q.startswith("label_values(pipemon_pipeline_state") and pipeline_q.endswith("pipeline)")

    panels = list(all_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(panels) >= 12 and len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids)
    occupied: set[tuple[int, int]] = set()
    for p in panels:
        assert p["title"] and p["type"] in {"row", "stat", "piechart", "table", "timeseries", "bargauge"}
        g = p["gridPos"]
        assert all(isinstance(g[k], int) and g[k] >= 0 for k in "hwxy") and g["h"] > 0 and g["w"] > 0
        assert g["x"] + g["w"] <= 24, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & occupied, f"panel {p['title']!r} overlaps another"
        occupied |= cells
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}"
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs)
        for t in p["targets"]:
            expr = t["expr"]
            assert expr.strip() and METRIC.search(expr), (p["title"], t)
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"
            # per-pipeline series follow the team and pipeline variables
            for sel in re.finditer(r"\b(pipemon_pipeline_[a-z_]+)(\{[^}]*\})?", expr):
                labels = sel.group(2) or ""
                assert '$team' in labels and '$pipeline' in labels, (p["title"], expr)
    assert "histogram_quantile(0.95" in json.dumps(d)


def test_the_dashboard_references_only_metrics_the_service_exports(client, clock):
    populate(client, clock)
    m = Scrape(client)
    exported_families = set(m.families)
    exported_samples = {s.name for s in m.samples}

    referenced = {name for q in dashboard_queries(load_dashboard()) for name in METRIC.findall(q)}
    families = {SUFFIX.sub("", n) for n in referenced}
    assert MUST_SHOW <= families, MUST_SHOW - families
    missing = sorted(n for n in referenced if SUFFIX.sub("", n) not in exported_families)
    assert not missing, f"the dashboard queries metrics the service does not export: {missing}"
    # the exact series name too: `_bucket` of a histogram, `_total` of a counter, nothing else
    missing = sorted(referenced - exported_samples)
    assert not missing, f"the dashboard queries series the service does not export: {missing}"


def test_scrapes_are_labelled_with_the_metrics_route(client):
    """/metrics must be a FastAPI route: a plain Starlette route is not put in scope['route'], and its
    scrapes would be labelled route="unmatched", mixed with the 404s."""
    Scrape(client)
    m = Scrape(client)
    assert m.value("pipemon_http_request_duration_seconds_count",
                   method="GET", route="/metrics", status="200") >= 1
    assert not m.find("pipemon_http_request_duration_seconds_count", route="unmatched", status="200")


def test_the_method_label_is_bounded(client):
    """A client-chosen method token must not make new series: unknown methods are labelled "other"."""
    for i in range(5):
        client.request(f"BOGUS{i}", "/healthz")
    client.get("/healthz")
    methods = {s.labels["method"] for s in Scrape(client).find("pipemon_http_request_duration_seconds_count",
                                                               route="/healthz")}
    assert len(methods) <= 2, methods


def test_a_gzip_scrape_is_the_same_exposition_compressed(client, clock):
    """Prometheus asks for gzip: the answer says so and decompresses to the plain scrape; the event-loop
    lag gauge is there (its probe runs from start-up)."""
    populate(client, clock)
    r = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in r.headers["vary"].lower()
    plain = client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    # httpx decodes gzip itself: what it decoded is a full exposition
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert int(r.headers["content-length"]) * 3 < len(plain.content)  # what went over the wire: compressed
    assert {s.labels["pipeline"] for s in fams["pipemon_pipeline_state"].samples} == {
        "etl/good", "etl/bad", "etl/running", "cron/backup"}
    [lag] = fams["pipemon_event_loop_lag_seconds"].samples
    assert lag.value >= 0
    assert fams["pipemon_event_loop_lag_seconds"].type == "gauge"
    [gc_pause] = fams["pipemon_gc_pause_seconds"].samples
    assert gc_pause.value >= 0
