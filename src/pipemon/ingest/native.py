"""The native front door: `POST /api/v1/events`, one JSON event or an array of up to 10,000.

A simple schema for producers that don't speak OpenLineage (documented in the README):

    {"namespace": "billing", "name": "nightly_invoices",     # or "pipeline": "billing/nightly_invoices"
     "run_id": "2026-11-26", "type": "COMPLETE",             # START RUNNING COMPLETE FAIL ABORT HEARTBEAT
     "event_time": "2026-11-26T02:14:00Z",                   # ISO 8601 or unix seconds; default: now
     "event_id": "…",                                        # optional idempotency key
     "metrics": {"rows": 120000, "bytes": 5.2e7, "any_metric": 1.5},
     "duration_s": 840,                                      # optional: a terminal event without a START
     "error": {"message": "…", "type": "…"},                 # or a plain string
     "parent": {"namespace": "…", "name": "…", "run_id": "…"},
     "inputs": ["ns/dataset"], "outputs": ["ns/dataset"], "team": "billing",
     "nominal_time": "2026-11-26T02:00:00Z", "log": "last lines of output"}

A batch is all-or-nothing: with any bad item, nothing is stored and the answer names each bad item.
"""
from __future__ import annotations

import uuid
from typing import Annotated, Any, Union

import msgspec

from pipemon.errors import BadJson, InvalidEvent, Problem
from pipemon.ingest.common import event_key, parse_time, problem_from, scrub_nul, split_items
from pipemon.model import Event, EventType, RunRef, Source, split_pipeline_key

MAX_BATCH = 10_000
MAX_LOG = 10_240

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
Time = Union[str, float]


class NativeError(msgspec.Struct, forbid_unknown_fields=True):
    message: Annotated[str, msgspec.Meta(max_length=100_000)]
    type: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class NativeParent(msgspec.Struct, forbid_unknown_fields=True):
    namespace: Name
    name: Name
    run_id: Name


class NativeEvent(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    namespace: Name | None = None
    name: Name | None = None
    pipeline: Name | None = None
    run_id: Name | None = None
    event_time: Time | None = None
    event_id: Name | None = None
    metrics: dict[str, float] | None = None
    rows: Annotated[float, msgspec.Meta(ge=0)] | None = None
    bytes: Annotated[float, msgspec.Meta(ge=0)] | None = None
    duration_s: Annotated[float, msgspec.Meta(ge=0)] | None = None
    error: NativeError | str | None = None
    parent: NativeParent | None = None
    inputs: list[Name] = []
    outputs: list[Name] = []
    team: Name | None = None
    nominal_time: Time | None = None
    log: str | None = None


_DECODER = msgspec.json.Decoder(NativeEvent)
_FIELD_TYPES = {f.name: f.type for f in msgspec.structs.fields(NativeEvent)}
_EVENT_TYPES = {t.value: t for t in EventType}


def parse(body: bytes, now: float) -> list[Event]:
    items, was_array = split_items(body, MAX_BATCH)
    events: list[Event] = []
    problems: list[Problem] = []
    for i, raw in enumerate(items):
        prefix = f"$[{i}]" if was_array else "$"
        try:
            item = _DECODER.decode(raw)
            got = _normalize(item, raw, prefix, now)
            if b"\\u0000" in bytes(raw):
                got = [scrub_nul(ev, prefix) for ev in got]
            events.extend(got)
        except msgspec.ValidationError:
            problems.extend(_all_problems(raw, prefix))
        except msgspec.DecodeError as e:
            raise BadJson(f"body is not valid JSON: {e}") from None
        except InvalidEvent as e:
            problems.extend(e.problems)
    if problems:
        what = f"{len({p.loc.split('.')[0] for p in problems})} of {len(items)} events are invalid; none was stored" \
            if was_array else "invalid event"
        raise InvalidEvent(what, problems)
    return events


def _all_problems(raw: msgspec.Raw, prefix: str) -> list[Problem]:
    """msgspec stops at the first bad field; go field by field to name every one."""
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        return [Problem(prefix, f"not valid JSON: {e}")]
    if not isinstance(obj, dict):
        return [Problem(prefix, f"expected an event object, got {type(obj).__name__}")]
    out = []
    for k, v in obj.items():
        t = _FIELD_TYPES.get(k)
        if t is None:
            out.append(Problem(f"{prefix}.{k}", "unknown field"))
            continue
        try:
            msgspec.convert(v, t, strict=False)
        except msgspec.ValidationError as e:
            if k == "metrics" and isinstance(v, dict):  # name the metric, not `metrics[...]`
                for mk, mv in v.items():
                    if isinstance(mv, bool) or not isinstance(mv, (int, float)):
                        out.append(Problem(f"{prefix}.metrics.{mk}", f"expected a number, got {mv!r}"[:200]))
            else:
                out.append(problem_from(e, f"{prefix}.{k}"))
    if "type" not in obj:
        out.append(Problem(f"{prefix}.type", "required field is missing"))
    elif isinstance(obj["type"], str) and obj["type"].upper() not in _EVENT_TYPES:
        out.append(Problem(f"{prefix}.type", f"unknown event type {obj['type']!r}; expected one of "
                                             + ", ".join(_EVENT_TYPES)))
    return out or [Problem(prefix, "invalid event")]


def _normalize(e: NativeEvent, raw: msgspec.Raw, prefix: str, now: float) -> list[Event]:
    problems = []
    etype = _EVENT_TYPES.get(e.type.upper())
    if etype is None:
        problems.append(Problem(f"{prefix}.type", f"unknown event type {e.type!r}; expected one of "
                                                  + ", ".join(_EVENT_TYPES)))
    ns, name = e.namespace, e.name
    if e.pipeline is not None:
        if ns is not None or name is not None:
            problems.append(Problem(f"{prefix}.pipeline", "give either pipeline or namespace + name, not both"))
        else:
            try:
                ns, name = split_pipeline_key(e.pipeline)
            except ValueError as err:
                problems.append(Problem(f"{prefix}.pipeline", str(err)))
    elif ns is None or name is None:
        problems.append(Problem(f"{prefix}.{'name' if ns else 'namespace'}",
                                "required: namespace and name (or pipeline: \"namespace/name\")"))
    if e.duration_s is not None and etype is not None and not etype.is_terminal:
        problems.append(Problem(f"{prefix}.duration_s", "only a COMPLETE, FAIL or ABORT event may carry a duration"))
    for field in ("rows", "bytes"):
        v = (e.metrics or {}).get(field)
        if v is not None and v < 0:
            problems.append(Problem(f"{prefix}.metrics.{field}", "must be >= 0"))
    t = now
    nominal = None
    try:
        if e.event_time is not None:
            t = parse_time(e.event_time, f"{prefix}.event_time")
        if e.nominal_time is not None:
            nominal = parse_time(e.nominal_time, f"{prefix}.nominal_time")
    except InvalidEvent as err:
        problems.extend(err.problems)
    if problems:
        raise InvalidEvent("invalid event", problems)
    assert ns is not None and name is not None and etype is not None

    pipeline = f"{ns}/{name}"
    run_id = e.run_id
    if run_id is None and (etype is EventType.START or e.duration_s is not None):
        # A new run without a producer id: derive it from event_id so a retry lands on the same run.
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, pipeline + "#" + e.event_id)) if e.event_id else str(uuid.uuid4())
    if e.event_id is not None:
        key = event_key(t if e.event_time is not None else None, "n", pipeline, e.event_id)
    elif e.run_id is not None:
        key = event_key(t, "n", pipeline, e.run_id, etype.value, repr(t))
    else:
        key = event_key(t, uuid.uuid4().hex)  # nothing identifies it: every delivery is a new event
    metrics = dict(e.metrics) if e.metrics else {}
    rows = metrics.pop("rows", e.rows)
    byts = metrics.pop("bytes", e.bytes)
    err = e.error
    err_msg, err_type = (err, None) if isinstance(err, str) else ((err.message, err.type) if err else (None, None))
    parent = RunRef(e.parent.namespace, e.parent.name, e.parent.run_id) if e.parent else None
    event = Event(
        key=key, source=Source.NATIVE, namespace=ns, name=name, run_id=run_id or "", type=etype, time=t,
        parent=parent, rows=rows, bytes=byts, metrics=metrics or None, error_message=err_msg, error_type=err_type,
        inputs=tuple(e.inputs), outputs=tuple(e.outputs), team=e.team, nominal_time=nominal,
        log=e.log[-MAX_LOG:] if e.log else None, raw=bytes(raw),
    )
    if e.duration_s is None:
        return [event]
    start = Event(key=event_key(t - e.duration_s, key, "start"), source=Source.NATIVE, namespace=ns, name=name, run_id=event.run_id,
                  type=EventType.START, time=t - e.duration_s, parent=parent, team=e.team, nominal_time=nominal)
    return [start, event]


def schema_components(ref_template: str = "#/components/schemas/{name}") -> dict[str, Any]:
    """The JSON schemas of the native event and its parts, as OpenAPI components."""
    _, components = msgspec.json.schema_components([NativeEvent], ref_template=ref_template)
    return components
