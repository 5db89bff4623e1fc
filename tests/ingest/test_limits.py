"""Each limit and rule of pipemon.ingest.limits, through each front door: the field is named, the limit
is said, and a value just inside the limit passes."""
from __future__ import annotations

import json
import tracemalloc

import pytest

from pipemon.errors import BadJson, InvalidEvent
from pipemon.ingest import limits, native, openlineage, ping
from pipemon.ingest.common import split_items

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86_400.0


def native_problems(body) -> list[tuple[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises((InvalidEvent, BadJson)) as e:
        native.parse(raw, NOW, horizon=limits.MAX_FUTURE_S)
    return [(p.loc, p.msg) for p in e.value.problems]


def ol_event(**over) -> dict:
    ev = {"eventTime": "2027-01-15T07:00:00Z", "eventType": "COMPLETE", "producer": "p", "schemaURL": "s",
          "run": {"runId": "0190c0de-0000-7000-8000-000000000001", "facets": {}},
          "job": {"namespace": "ns", "name": "job", "facets": {}}, "inputs": [], "outputs": []}
    ev.update(over)
    return ev


def ol_problems(body) -> list[tuple[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises((InvalidEvent, BadJson)) as e:
        openlineage.parse(raw, NOW, horizon=limits.MAX_FUTURE_S)
    return [(p.loc, p.msg) for p in e.value.problems]


# --- nesting --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,depth", [
    (b"1", 0),
    (b"[]", 1),
    (b'{"a": [[1], {"b": []}]}', 3),
    (b"[" * 70 + b"]" * 70, 70),
    (b'["' + b"[" * 100 + b'"]', 1),                          # brackets inside a string do not count
    (b'["\\"' + b"[" * 100 + b'"]', 1),                       # nor after an escaped quote
    (b'["\\\\", ' + b"[" * 80 + b"]" * 80 + b"]", 81),        # an escaped backslash ends the string
    (b'[")]", ' * 70 + b"1" + b"]" * 70, 70),                 # closers in strings do not hide real depth
])
def test_nesting_depth(text, depth):
    json.loads(text)  # each case is valid JSON
    got = limits.nesting_depth(text, limit=200)
    assert got == depth or (got == 200 and depth <= 200 and text.count(b"[") + text.count(b"{") <= 200)


@pytest.mark.parametrize("depth", [limits.MAX_DEPTH, limits.MAX_DEPTH + 1, 1000, 100_000])
def test_deep_bodies_are_a_422_naming_the_limit_on_every_door(depth):
    inner = b"[" * (depth - 2) + b"]" * (depth - 2)   # the event object and the field make two more levels
    for parse, body in ((native.parse, b'{"type":"START","pipeline":"a/b","metrics":{"x":' + inner + b"}}"),
                        (openlineage.parse,
                         json.dumps(ol_event()).encode()[:-1] + b', "x": {"y":' + inner + b"}}")):
        if depth <= limits.MAX_DEPTH and parse is openlineage.parse:
            assert parse(body, NOW)  # a deep custom facet within the limit is fine
            continue
        with pytest.raises(InvalidEvent) as e:
            parse(body, NOW)
        if depth > limits.MAX_DEPTH:
            assert any("nested deeper than 64 levels" in p.msg for p in e.value.problems), e.value.problems


@pytest.mark.parametrize("depth", [20, 100_000])
def test_a_deep_array_body_is_a_422(depth):
    for parse in (native.parse, openlineage.parse):
        with pytest.raises(InvalidEvent):
            parse(b"[" * depth + b"]" * depth, NOW)


# --- bytes, not characters ------------------------------------------------------------------------------

@pytest.mark.parametrize("value,ok", [
    ("a" * 1000, True), ("a" * 1001, False),
    ("é" * 500, True), ("é" * 501, False),      # 2 bytes each
    ("😀" * 250, True), ("😀" * 251, False),    # 4 bytes each
])
def test_identifiers_are_limited_in_utf8_bytes(value, ok):
    assert (limits.ident(value, "$.x") == []) is ok


@pytest.mark.parametrize("field", ["namespace", "name", "run_id", "event_id", "team"])
def test_native_identifier_over_the_limit(field):
    ev = {"namespace": "a", "name": "b", "type": "START", "run_id": "r", field: "é" * 501}
    assert native_problems(ev) == [(f"$.{field}", "is 1,002 bytes long (UTF-8); the limit is 1,000 bytes")]


def test_native_parent_pipeline_and_datasets_over_the_limit():
    ev = {"pipeline": "a/" + "x" * 1001, "type": "START",
          "parent": {"namespace": "n", "name": "m", "run_id": "r" * 1001},
          "inputs": ["ok", "d" * 2001], "outputs": ["o"] * 1001}
    locs = {loc for loc, _ in native_problems(ev)}
    assert locs == {"$.pipeline (name part)", "$.parent.run_id", "$.inputs[1]", "$.outputs"}


def test_native_batch_names_every_bad_item_and_field():
    good = {"pipeline": "a/b", "type": "START"}
    batch = [good, {"pipeline": "a/b", "type": "START", "run_id": "r" * 1001, "rows": -1},
             good, {"pipeline": "a/b", "type": "BAD", "event_time": NOW + 2 * DAY, "metrics": {"m": "x"}}]
    locs = {loc for loc, _ in native_problems(batch)}
    assert locs == {"$[1].run_id", "$[1].rows", "$[3].type", "$[3].event_time", "$[3].metrics.m"}


@pytest.mark.parametrize("mutate,locs", [
    (lambda e: e["job"].update(name="n" * 1001), {"$.job.name"}),
    (lambda e: e["run"].update(runId="r" * 1001), {"$.run.runId"}),
    (lambda e: e["run"]["facets"].update(parent={"run": {"runId": "p" * 1001},
                                                  "job": {"namespace": "n", "name": "j"}}),
     {"$.run.facets.parent.run.runId"}),
    (lambda e: e["job"]["facets"].update(ownership={"owners": [{"name": "team:" + "t" * 1001}]}),
     {"$.job.facets.ownership.owners"}),
    (lambda e: e.update(inputs=[{"namespace": "n", "name": "d" * 2000}]), {"$.inputs[0]"}),
    (lambda e: e.update(outputs=[{"namespace": "n", "name": str(i)} for i in range(1001)]), {"$.outputs"}),
    (lambda e: e["outputs"].append({"namespace": "n", "name": "o",
                                    "outputFacets": {"outputStatistics": {"rowCount": -5}}}),
     {"$.outputs[].outputFacets.outputStatistics.rowCount"}),
    # both a bad run.runId and a missing eventTime, not only the first the decoder met
    (lambda e: (e["run"].update(runId=5), e.pop("eventTime")), {"$.run.runId", "$.eventTime"}),
    (lambda e: (e["run"].update(runId="r" * 1001), e.pop("eventTime"), e["job"].pop("name")),
     {"$.run.runId", "$.eventTime", "$.job.name"}),
])
def test_openlineage_limits_name_the_field(mutate, locs):
    ev = ol_event()
    mutate(ev)
    assert {loc for loc, _ in ol_problems(ev)} == locs


@pytest.mark.parametrize("ns,name,rid,loc", [
    ("n" * 1001, "b", None, "namespace"), ("a", "é" * 501, None, "name"), ("a", "b", "r" * 1001, "rid"),
])
def test_ping_identifiers_over_the_limit(ns, name, rid, loc):
    with pytest.raises(InvalidEvent) as e:
        ping.parse(ns, name, None, b"", rid, NOW)
    [problem] = e.value.problems
    assert problem.loc == loc and "the limit is 1,000 bytes" in problem.msg


# --- counts and numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("metrics,loc,says", [
    ({f"m{i}": 1 for i in range(101)}, "$.metrics", "the limit is 100"),
    ({"m" * 201: 1}, "$.metrics." + "m" * 50, "the limit is 200 bytes"),
    ({"x": 1e19}, "$.metrics.x", "out of range"),
    ({"x": -1e19}, "$.metrics.x", "out of range"),
    ({"rows": -1}, "$.metrics.rows", ">= 0"),
    ({"": 1}, "$.metrics", "must not be empty"),
])
def test_metric_limits(metrics, loc, says):
    problems = native_problems({"pipeline": "a/b", "type": "COMPLETE", "metrics": metrics})
    assert any(p == loc and says in m for p, m in problems), problems


@pytest.mark.parametrize("body,loc", [
    (b'{"pipeline":"a/b","type":"COMPLETE","metrics":{"x":1e999}}', "$.metrics.x"),
    (b'{"pipeline":"a/b","type":"COMPLETE","rows":1e400}', "$.rows"),
    (b'{"pipeline":"a/b","type":"COMPLETE","metrics":{"x":NaN}}', "$..x"),
    (b'{"pipeline":"a/b","type":"COMPLETE","bytes":Infinity}', "$..bytes"),
    (b'[{"pipeline":"a/b","type":"COMPLETE","duration_s":-Infinity}]', "$..duration_s"),
    (b'{"pipeline":"a/b","type":"COMPLETE","duration_s":-1}', "$.duration_s"),
    (b'{"pipeline":"a/b","type":"COMPLETE","duration_s":1e300}', "$.duration_s"),
    (b'{"pipeline":"a/b","type":"COMPLETE","duration_s":1800000001,"event_time":1800000000}', "$.duration_s"),
    (b'{"pipeline":"a/b","type":"COMPLETE","rows":12345678901234567890123}', "$.rows"),
])
def test_numbers_that_overflow_are_named(body, loc):
    assert loc in [p for p, _ in native_problems(body)]


def test_nan_in_openlineage_statistics_is_named():
    body = json.dumps(ol_event(outputs=[{"namespace": "n", "name": "o", "outputFacets": {
        "outputStatistics": {"rowCount": 1}}}])).replace('"rowCount": 1', '"rowCount": NaN').encode()
    assert [p for p, _ in ol_problems(body)] == ["$..rowCount"]


# --- times ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,ok,says", [
    (NOW, True, ""),
    (NOW + DAY, True, ""),
    (0, True, ""),
    ("2027-01-15T09:00:00+01:00", True, ""),
    (-1, False, "before 1970-01-01"),
    ("1969-12-31T23:59:59Z", False, "before 1970-01-01"),
    ("0001-01-01T00:00:00+05:00", False, "before 1970-01-01"),
    (NOW + DAY + 1, False, "more than 24 h in the future"),
    ("9999-12-31T23:59:59Z", False, "more than 24 h in the future"),
    (NOW * 1000, False, "looks like unix milliseconds, not seconds: send 1800000000.000"),
    (NOW * 1e6, False, "looks like unix microseconds"),
    (NOW * 1e9, False, "looks like unix nanoseconds"),
    (1e300, False, "in the future"),
])
def test_event_time_range(value, ok, says):
    for field in ("event_time", "nominal_time"):
        ev = {"pipeline": "a/b", "type": "START", field: value}
        if ok:
            assert native.parse(json.dumps(ev).encode(), NOW, horizon=limits.MAX_FUTURE_S)
        else:
            [(loc, msg)] = native_problems(ev)
            assert loc == f"$.{field}" and says in msg, msg


def test_openlineage_times_use_the_same_rule():
    [(loc, msg)] = ol_problems(ol_event(eventTime="1969-07-20T20:17:00Z"))
    assert loc == "$.eventTime" and "before 1970" in msg
    ev = ol_event()
    ev["run"]["facets"]["nominalTime"] = {"nominalStartTime": "2099-01-01T00:00:00Z"}
    [(loc, msg)] = ol_problems(ev)
    assert loc == "$.run.facets.nominalTime.nominalStartTime" and "in the future" in msg


def test_history_has_no_future_unless_a_horizon_is_given():
    body = json.dumps({"pipeline": "a/b", "type": "START", "event_time": NOW + 400 * DAY}).encode()
    assert native.parse(body, 0.0)[0].time == NOW + 400 * DAY  # replay, the demo: no clock to be after
    with pytest.raises(InvalidEvent):
        native.parse(body, NOW, horizon=limits.MAX_FUTURE_S)  # the HTTP door


# --- batch size without building the batch ----------------------------------------------------------------

def test_an_array_bomb_is_refused_without_building_it():
    bomb = b"[" + b"{}," * (5_000_000) + b"{}]"  # 15 MB, 5 million items
    tracemalloc.start()
    try:
        with pytest.raises(InvalidEvent) as e:
            split_items(bomb, native.MAX_BATCH)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "at most 10,000 events" in e.value.problems[0].msg
    assert peak < 20 << 20, f"peak {peak / 2**20:.0f} MiB while refusing a 15 MB array"


def test_a_full_batch_still_splits():
    body = json.dumps([{"pipeline": "a/b", "type": "START", "run_id": str(i)}
                       for i in range(native.MAX_BATCH)])
    items, was_array = split_items(body.encode(), native.MAX_BATCH)
    assert was_array and len(items) == native.MAX_BATCH and json.loads(bytes(items[-1]))["run_id"] == "9999"
    with pytest.raises(InvalidEvent):
        split_items(body[:-1].encode() + b',{"a":1}]', native.MAX_BATCH)


_ALL_LOCS = {f: f for f in ("namespace", "name", "run_id", "team", "integration", "parent.namespace",
                            "parent.name", "parent.run_id", "root.namespace", "root.name", "root.run_id",
                            "inputs", "outputs", "rows", "bytes", "metrics", "time", "nominal_time")}


def _event(**over):
    from pipemon.model import Event, EventType, RunRef, Source
    base = dict(key="k" * 32, source=Source.OPENLINEAGE, namespace="ns", name="job", run_id="r",
                type=EventType.COMPLETE, time=NOW - 60, parent=RunRef("ns", "dag", "r0"),
                root=RunRef("ns", "dag", "r0"), rows=10.0, bytes=640.0, inputs=("a/b",), outputs=("c/d",),
                team="t", integration="AIRFLOW", nominal_time=NOW - 120)
    return Event(**{**base, **over})


@pytest.mark.parametrize("over", [
    {}, {"namespace": "é" * 250}, {"namespace": "€" * 251}, {"name": "😀" * 250}, {"run_id": "😀" * 251},
    {"team": "x" * 1001}, {"integration": "😀" * 300},
    {"parent": _event().parent.__class__("😀" * 251, "n", "r")},
    {"root": _event().root.__class__("n", "n", "😀" * 251)},
    {"inputs": ("😀" * 500,)}, {"outputs": ("😀" * 501,)}, {"inputs": ("a/b",) * limits.MAX_DATASETS},
    {"outputs": ("a/b",) * (limits.MAX_DATASETS + 1)},
    {"rows": float("nan")}, {"rows": -1.0}, {"bytes": float(2**64)}, {"bytes": float("inf")}, {"rows": None},
    {"time": float("nan")}, {"time": -1.0}, {"time": NOW + DAY}, {"time": NOW + DAY + 1}, {"time": 0.0},
    {"nominal_time": float("inf")}, {"nominal_time": NOW + 2 * DAY}, {"nominal_time": None},
    {"metrics": {"rows": -1.0}}, {"metrics": {"x": 1.0}},
])
def test_what_passes_at_a_glance_passes_every_limit(over):
    """plainly_within lets the OpenLineage door skip event_problems: it must never pass an event that
    event_problems refuses (it may send a good one the long way)."""
    ev = _event(**over)
    glance = limits.plainly_within(ev, NOW, DAY)
    full = limits.event_problems(ev, _ALL_LOCS, NOW, DAY)
    assert not (glance and full), full
    if not over:
        assert glance  # the common event takes the short way


def test_at_a_glance_without_a_horizon():
    assert limits.plainly_within(_event(time=NOW + 10 * DAY), NOW, float("inf"))
    assert not limits.plainly_within(_event(time=float("inf")), NOW, float("inf"))
