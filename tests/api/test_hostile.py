"""Hostile and odd input, on SQLite and PostgreSQL: whatever a client sends to any front door (native single
and batch, OpenLineage, ping path and body, gzip or not) is a 2xx or a clear 4xx, never a 5xx; a refused
body stores nothing; and afterwards every GET endpoint of the OpenAPI document still answers without a 5xx
(the list endpoints with 200), with its path parameters filled from what was stored."""
from __future__ import annotations

import gzip
import json
import re
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import T0

RAW = "\x01raw:"  # a placeholder string json.dumps keeps, replaced afterwards by a raw JSON token


def dumps(obj) -> bytes:
    text = json.dumps(obj)
    return re.sub(r'"\\u0001raw:([^"]*)"', lambda m: m.group(1), text).encode()


def raw(token: str) -> str:
    return RAW + token


deep = st.sampled_from([20, 64, 65, 999, 1500, 5000, 100_000]).map(lambda d: raw("[" * d + "]" * d))
bad_numbers = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e400",
                               "123456789012345678901234567890", "-1", "1e19", "0"]).map(raw)
times = st.one_of(
    st.sampled_from([-1, 0, T0, T0 + 86_400, T0 + 90_000, T0 * 1000, T0 * 1e6, T0 * 1e9, 1e300]),
    st.sampled_from(["1969-12-31T23:59:59Z", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
                     "2026-09-21T14:00:00Z", "2026-09-21T14:00:00", "not a time", ""]),
    bad_numbers,
)
names = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["a" * 1000, "a" * 1001, "é" * 500, "é" * 501, "😀" * 250, "😀" * 251, "x\x00y", "/",
                     "a/b/"]),
    st.integers(1, 3000).map(lambda n: "ü" * n),
)
numbers = st.one_of(bad_numbers, st.floats())
odd = st.one_of(deep, bad_numbers, times, names, st.none(), st.booleans(),
                st.lists(names, max_size=3), st.dictionaries(names, numbers, max_size=3))
event_types = st.sampled_from(["START", "COMPLETE", "FAIL", "RUNNING", "OTHER", "x"])

native_event = st.fixed_dictionaries(
    {"namespace": names, "name": names, "type": event_types},
    optional={"run_id": names, "event_id": names, "team": names, "event_time": times, "nominal_time": times,
              "duration_s": st.one_of(bad_numbers, st.floats(0, 1e10)), "rows": bad_numbers,
              "bytes": bad_numbers,
              "metrics": st.one_of(st.dictionaries(names, numbers, max_size=4),
                                   st.integers(90, 120).map(lambda n: {f"m{i}": i for i in range(n)}), deep),
              "inputs": st.one_of(st.lists(names, max_size=3),
                                  st.integers(990, 1010).map(lambda n: ["d"] * n)),
              "outputs": st.lists(names, max_size=3),
              "parent": st.fixed_dictionaries({"namespace": names, "name": names, "run_id": names}),
              "error": st.one_of(st.text(max_size=20), deep), "extra": odd},
)
job_ref = st.fixed_dictionaries({"namespace": names, "name": names})
run_facets = st.fixed_dictionaries({}, optional={
    "parent": st.fixed_dictionaries({"run": st.fixed_dictionaries({"runId": names}), "job": job_ref}),
    "nominalTime": st.fixed_dictionaries({"nominalStartTime": times}),
    "custom": odd})
job_facets = st.fixed_dictionaries({}, optional={"ownership": st.fixed_dictionaries({"owners": st.lists(
    st.fixed_dictionaries({"name": names}), max_size=2)})})
output = st.fixed_dictionaries({"namespace": names, "name": names}, optional={
    "outputFacets": st.fixed_dictionaries({"outputStatistics": st.fixed_dictionaries({"rowCount": bad_numbers})})})
ol_event = st.fixed_dictionaries(
    {"eventTime": times, "eventType": event_types,
     "run": st.fixed_dictionaries({"runId": st.one_of(names, bad_numbers)}, optional={"facets": run_facets}),
     "job": st.fixed_dictionaries({"namespace": names, "name": names}, optional={"facets": job_facets})},
    optional={"outputs": st.lists(output, max_size=3), "inputs": st.lists(job_ref, max_size=3), "producer": odd},
)
native_body = st.one_of(native_event, st.lists(native_event, min_size=1, max_size=3), deep,
                        st.lists(deep, min_size=1, max_size=2), odd).map(dumps)
ol_body = st.one_of(ol_event, st.lists(ol_event, min_size=1, max_size=3), deep,
                    st.lists(deep, min_size=1, max_size=2), odd).map(dumps)
HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _events(pm) -> int:
    engine = sa.create_engine(pm.db_url)
    try:
        with engine.connect() as c:
            return c.exec_driver_sql("SELECT count(*) FROM events").scalar_one()
    finally:
        engine.dispose()


def _post(client, pm, path: str, body: bytes, gz: bool) -> int:
    before = _events(pm)
    headers = {"content-type": "application/json"} | ({"content-encoding": "gzip"} if gz else {})
    r = client.post(path, content=gzip.compress(body) if gz else body, headers=headers)
    assert r.status_code < 500, (path, body[:300], r.status_code, r.text[:500])
    if r.status_code >= 400:
        err = r.json()
        assert err["error"] and err["message"], r.text
        assert _events(pm) == before, f"a refused body stored something: {r.text[:300]}"
    return r.status_code


def walk_get_endpoints(client) -> list[str]:
    """Every GET of the OpenAPI document (pings aside: they write), path parameters from stored data."""
    doc = client.get("/openapi.json").json()
    pipelines = client.get("/api/v1/pipelines", params={"limit": 20}).json()["items"]
    alerts = client.get("/api/v1/alerts").json()["items"]
    values: dict[str, list[str]] = {
        "pipeline_id": [p["id"] for p in pipelines[:5]] + ["no/such"],
        "team": sorted({p["team"] for p in pipelines if p["team"]})[:3] + ["nobody"],
        "alert_id": [str(a["id"]) for a in alerts[:3]] + ["999999"],
        "run_id": ["no-such-run"],
    }
    for pid in values["pipeline_id"][:3]:
        runs = client.get(f"/api/v1/pipelines/{quote(pid, safe='')}/runs").json().get("items", [])
        values["run_id"] += [r["run_id"] for r in runs[:2]]
    seen = []
    for path, ops in doc["paths"].items():
        if "get" not in ops or path.startswith("/ping") or "dashboard" in ops["get"].get("tags", []):
            continue  # pings write; the dashboard's pages have their own tests (tests/web/)
        params = re.findall(r"{(\w+)}", path)
        urls = [path]
        for p in params:
            urls = [u.replace("{" + p + "}", quote(v, safe="")) for u in urls for v in values[p]]
        for url in urls:
            r = client.get(url)
            assert r.status_code < 500, (url, r.status_code, r.text[:500])
            if not params and path != "/readyz":
                assert r.status_code == 200, (url, r.status_code, r.text[:300])
            seen.append(url)
    return seen


def edge_but_valid() -> list[tuple[str, bytes]]:
    """Values at the limits, on the accepting side: stored, then read back by the walk."""
    ol = {"eventTime": "2026-09-22T14:13:19Z", "eventType": "COMPLETE", "producer": "p", "schemaURL": "s",
          "run": {"runId": "r" * 1000, "facets": {"custom": json.loads("[" * 60 + "]" * 60),
                                                  "parent": {"run": {"runId": "😀" * 250},
                                                             "job": {"namespace": "é" * 500, "name": "p"}}}},
          "job": {"namespace": "😀" * 250, "name": "é" * 500, "facets": {"ownership": {"owners": [
              {"name": "team:" + "t" * 995}]}}},
          "outputs": [{"namespace": "n", "name": "d" * 1998, "outputFacets": {
              "outputStatistics": {"rowCount": 2**63, "size": 0}}}]}
    native = [{"namespace": "a" * 1000, "name": "é" * 500, "run_id": "😀" * 250, "type": "START",
               "event_time": 0},
              {"namespace": "a" * 1000, "name": "é" * 500, "run_id": "😀" * 250, "type": "COMPLETE",
               "event_time": T0 + 86_400, "metrics": {f"m{i}": (-1) ** i * 2.0**63 for i in range(100)},
               "inputs": [f"in/{i}" for i in range(1000)], "team": "t" * 1000},
              {"pipeline": "b/c", "type": "COMPLETE", "duration_s": T0, "event_time": T0, "rows": 2**63}]
    return [("/api/v1/lineage", json.dumps(ol).encode()), ("/api/v1/events", json.dumps(native).encode())]


def test_hostile_bodies_on_every_door_never_a_5xx_and_every_read_still_answers(client, pm):
    statuses: list[int] = []

    @HOSTILE
    @given(st.one_of(st.tuples(st.just("/api/v1/events"), native_body),
                     st.tuples(st.just("/api/v1/lineage"), ol_body)), st.booleans())
    def post_bodies(door_body, gz):
        path, body = door_body
        statuses.append(_post(client, pm, path, body, gz))

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ns=names, name=names, signal=st.one_of(st.none(), st.sampled_from(["start", "fail", "0", "256", "x"])),
           rid=st.one_of(st.none(), names), body=st.binary(max_size=64),
           method=st.sampled_from(["GET", "POST"]))
    def ping(ns, name, signal, rid, body, method):
        url = f"/ping/{quote(ns, safe='')}/{quote(name, safe='')}" + (f"/{signal}" if signal else "")
        r = client.request(method, url, params={"rid": rid} if rid is not None else None,
                           content=body if method == "POST" else None)
        assert r.status_code < 500, (url, r.status_code, r.text[:300])

    for path, body in edge_but_valid():
        assert _post(client, pm, path, body, gz=False) == 200
    post_bodies()
    ping()
    assert {s // 100 for s in statuses} == {2, 4}, statuses  # both sides of the line were exercised
    pm.writer.tick()  # the engine evaluates whatever was stored
    seen = walk_get_endpoints(client)
    assert any("/runs" in u for u in seen) and "/api/v1/summary" in seen


@pytest.mark.parametrize("depth", [20, 100_000])
@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/lineage"])
@pytest.mark.parametrize("gz", [False, True])
def test_deep_bodies_are_a_4xx(client, pm, path, depth, gz):
    body = b"[" * depth + b"]" * depth
    r = client.post(path, content=gzip.compress(body) if gz else body,
                    headers={"content-encoding": "gzip"} if gz else {})
    assert 400 <= r.status_code < 500, r.text
    assert _events(pm) == 0


def test_an_array_bomb_in_gzip_stops_at_the_limit(client, pm):
    bomb = gzip.compress(b"[" + b"{}," * 6_000_000 + b"{}]", 9)  # ~18 KB of gzip, 18 MB of JSON
    assert len(bomb) < 20_000
    r = client.post("/api/v1/events", content=bomb, headers={"content-encoding": "gzip"})
    assert r.status_code == 413 and "decompressed body is over the limit" in r.json()["message"]
    inside = gzip.compress(b"[" + b"{}," * 5_000_000 + b"{}]", 9)  # 15 MB: under the limit, too many items
    r = client.post("/api/v1/events", content=inside, headers={"content-encoding": "gzip"})
    assert r.status_code == 422 and "at most 10,000 events" in r.text
    r = client.post("/api/v1/lineage", content=inside, headers={"content-encoding": "gzip"})
    assert r.status_code == 413  # one OpenLineage body is 1 MiB at most, decoded
    assert _events(pm) == 0
    assert client.get("/api/v1/summary").status_code == 200


def test_an_event_with_many_bad_fields_names_them_all(client):
    ol = {"eventTime": None, "eventType": "START", "run": {"runId": 5},
          "job": {"namespace": "n", "name": "j"}}
    r = client.post("/api/v1/lineage", content=json.dumps(ol))
    assert r.status_code == 422
    assert {p["loc"] for p in r.json()["problems"]} == {"$.eventTime", "$.run.runId"}
    batch = [{"pipeline": "a/b", "type": "START"},
             {"pipeline": "a/b", "type": "START", "event_time": T0 * 1000},
             {"pipeline": "a/" + "é" * 501, "type": "START", "rows": -3}]
    r = client.post("/api/v1/events", content=json.dumps(batch))
    assert r.status_code == 422
    problems = {p["loc"]: p["msg"] for p in r.json()["problems"]}
    assert set(problems) == {"$[1].event_time", "$[2].pipeline (name part)", "$[2].rows"}
    assert "looks like unix milliseconds" in problems["$[1].event_time"]
