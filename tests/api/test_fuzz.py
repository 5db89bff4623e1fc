"""Nothing a client sends yields a 500: property-based fuzzing of the front doors (hypothesis) and of the
whole API from its own OpenAPI document (schemathesis)."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
FIELDS = ["pipeline", "namespace", "name", "run_id", "type", "event_time", "event_id", "metrics", "rows", "bytes",
          "duration_s", "error", "parent", "inputs", "outputs", "team", "nominal_time", "log"]
TYPES = st.sampled_from(["START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "HEARTBEAT", "start", "BAD", ""])
almost_native = st.fixed_dictionaries(
    {"pipeline": st.sampled_from(["a/b", "x://y/z", "bad", "", "a/\x00"]), "type": TYPES},
    optional={f: json_values for f in FIELDS if f not in ("pipeline", "type")} | {"run_id": st.text(max_size=40),
                                                 "event_time": st.one_of(st.text(max_size=30), st.floats(-1e12, 1e12),
                                                                         st.just("2026-11-26T00:00:00Z"))},
)
ol_keys = ["eventTime", "eventType", "run", "job", "inputs", "outputs", "producer", "schemaURL", "dataset"]
almost_ol = st.fixed_dictionaries(
    {"eventTime": st.one_of(st.just("2026-11-26T00:00:00Z"), st.text(max_size=30)),
     "run": st.one_of(st.fixed_dictionaries({"runId": st.text(max_size=40)},
                                            optional={"facets": st.dictionaries(st.sampled_from(
                                                ["parent", "errorMessage", "nominalTime", "x"]), json_values)}),
                      json_values),
     "job": st.one_of(st.fixed_dictionaries({"namespace": st.text(max_size=20), "name": st.text(max_size=20)},
                                            optional={"facets": st.dictionaries(
                                                st.sampled_from(["ownership", "jobType", "y"]), json_values)}),
                      json_values)},
    optional={k: json_values for k in ol_keys if k not in ("eventTime", "run", "job")} | {"eventType": TYPES},
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _check(r):
    assert r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    if r.status_code >= 400:
        assert body["error"] and body["message"]


@FUZZ
@given(body=st.one_of(almost_native, st.lists(almost_native, max_size=5), json_values))
def test_native_never_500(client, body):
    _check(client.post("/api/v1/events", content=json.dumps(body)))


@FUZZ
@given(body=st.one_of(almost_ol, st.lists(almost_ol, max_size=3), json_values))
def test_openlineage_never_500(client, body):
    _check(client.post("/api/v1/lineage", content=json.dumps(body)))


@FUZZ
@given(raw=st.binary(max_size=300))
def test_raw_bytes_never_500(client, raw):
    for path in ("/api/v1/events", "/api/v1/lineage"):
        _check(client.post(path, content=raw))
    r = client.post("/ping/a/b", content=raw)
    assert r.status_code == 200


@FUZZ
@given(ns=st.text(min_size=1, max_size=20), name=st.text(min_size=1, max_size=20), signal=st.text(max_size=6))
def test_ping_paths_never_500(client, ns, name, signal):
    from urllib.parse import quote
    r = client.get(f"/ping/{quote(ns, safe='')}/{quote(name, safe='')}/{quote(signal, safe='')}")
    assert r.status_code < 500, r.text


def test_openapi_document_fuzzed_by_schemathesis(client):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import given as hgiven
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures = []
    for op in schema.get_all_operations():
        operation = op.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @hgiven(case=operation.as_strategy())
        def run(case):
            r = case.call()
            if r.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {r.status_code}: {r.text[:200]}")

        run()
    assert not failures, "\n".join(failures[:10])


def test_every_reference_in_the_openapi_document_resolves(client):
    doc = client.get("/openapi.json").json()
    refs = set()

    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("$ref"), str):
                refs.add(x["$ref"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(doc)
    assert "#/components/schemas/NativeEvent" in refs
    for ref in refs:
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
