import json
from datetime import datetime, timezone

import pytest

from pipemon.errors import BadJson, InvalidEvent
from pipemon.ingest import native
from pipemon.model import EventType

NOW = 1_800_000_000.0  # 2027-01-15: after the events below (a later time is refused)


def parse(obj):
    return native.parse(json.dumps(obj).encode(), NOW)


def test_one_event_with_every_field():
    [ev] = parse({"namespace": "billing", "name": "nightly", "run_id": "r1", "type": "fail",
                  "event_time": "2026-11-26T02:14:00+01:00", "event_id": "e1",
                  "metrics": {"rows": 10, "bytes": 20, "lag_s": 1.5}, "error": {"message": "boom", "type": "KeyError"},
                  "parent": {"namespace": "a", "name": "b", "run_id": "p"}, "inputs": ["s3/in"], "outputs": ["s3/out"],
                  "team": "fin", "nominal_time": 1_790_000_000, "log": "tail"})
    assert (ev.pipeline, ev.run_id, ev.type) == ("billing/nightly", "r1", EventType.FAIL)
    assert ev.time == datetime(2026, 11, 26, 1, 14, tzinfo=timezone.utc).timestamp()
    assert (ev.rows, ev.bytes, ev.metrics) == (10, 20, {"lag_s": 1.5})
    assert (ev.error_message, ev.error_type) == ("boom", "KeyError")
    assert ev.parent.run_id == "p" and ev.inputs == ("s3/in",) and ev.team == "fin"
    assert ev.nominal_time == 1_790_000_000 and ev.log == "tail"


def test_pipeline_shorthand_default_time_and_string_error():
    [ev] = parse({"pipeline": "airflow://prod/daily", "run_id": "r", "type": "FAIL", "error": "oops"})
    assert (ev.namespace, ev.name, ev.time, ev.error_message) == ("airflow://prod", "daily", NOW, "oops")


def test_duration_on_a_terminal_event_synthesizes_its_start():
    start, end = parse({"pipeline": "a/b", "type": "COMPLETE", "event_time": 1000, "duration_s": 60})
    assert (start.type, start.time, end.type, end.time) == (EventType.START, 940, EventType.COMPLETE, 1000)
    assert start.run_id == end.run_id != "" and start.key != end.key


def test_retry_gives_the_same_keys():
    body = {"pipeline": "a/b", "type": "COMPLETE", "event_time": 1000, "duration_s": 60, "event_id": "x"}
    assert [e.key for e in parse(body)] == [e.key for e in parse(body)]
    body2 = {"pipeline": "a/b", "type": "START", "run_id": "r", "event_time": "2026-01-01T00:00:00Z"}
    assert parse(body2)[0].key == parse(body2)[0].key


@pytest.mark.parametrize("body,loc,msg", [
    ({"pipeline": "a/b", "type": "EXPLODE"}, "$.type", "unknown event type"),
    ({"namespace": "a", "type": "START"}, "$.name", "required"),
    ({"pipeline": "nope", "type": "START"}, "$.pipeline", "namespace/name"),
    ({"pipeline": "a/b", "type": "START", "event_time": "yesterday"}, "$.event_time", "ISO 8601"),
    ({"pipeline": "a/b", "type": "START", "duration_s": 5}, "$.duration_s", "only a COMPLETE"),
    ({"pipeline": "a/b", "type": "START", "metrics": {"rows": "many"}}, "$.metrics.rows", "number"),
    ({"pipeline": "a/b", "type": "START", "metrics": {"rows": -1}}, "$.metrics.rows", ">= 0"),
    ({"pipeline": "a/b", "type": "START", "colour": "red"}, "$.colour", "unknown field"),
    ({"pipeline": "a/b"}, "$.type", "missing"),
    ({"pipeline": "a/b", "type": "START", "rows": -3}, "$.rows", ">= 0"),
])
def test_schema_violations_name_their_path(body, loc, msg):
    with pytest.raises(InvalidEvent) as e:
        parse(body)
    assert any(p.loc == loc and msg in p.msg for p in e.value.problems), e.value.problems


def test_a_bad_batch_names_each_bad_item_and_every_bad_field():
    good = {"pipeline": "a/b", "type": "START", "run_id": "r"}
    with pytest.raises(InvalidEvent) as e:
        parse([good, {"namespace": 3, "name": "b", "type": "WHAT", "metrics": {"rows": "x"}}, good,
               {"pipeline": "a/b", "type": "START", "extra": 1}])
    locs = {p.loc for p in e.value.problems}
    assert locs == {"$[1].namespace", "$[1].type", "$[1].metrics.rows", "$[3].extra"}
    assert "2 of 4 events are invalid" in e.value.message


@pytest.mark.parametrize("body,exc", [(b"{nope", BadJson), (b"", BadJson), (b"42", InvalidEvent), (b"[]", InvalidEvent),
                                      (b'"str"', InvalidEvent), (b"[1, 2]", InvalidEvent)])
def test_not_an_event(body, exc):
    with pytest.raises(exc):
        native.parse(body, NOW)


def test_batch_limit():
    with pytest.raises(InvalidEvent, match="too long"):
        parse([{"pipeline": "a/b", "type": "START"}] * (native.MAX_BATCH + 1))
