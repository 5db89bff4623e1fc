"""The native front door: `POST /api/v1/events`, one JSON event or an array of up to 10,000.

A simple schema for producers that don't speak OpenLineage (documented in the README):

    {"namespace": "billing", "name": "nightly_invoices",     # or "pipeline": "billing/nightly_invoices"
     "run_id": "2026-11-26", "type": "COMPLETE",             # START RUNNING COMPLETE FAIL ABORT HEARTBEAT
                                                             # or a word of model.EVENT_WORDS (success …)
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

import functools
import math
import uuid
from typing import Annotated, Any

import msgspec

from pipemon.errors import InvalidEvent, Problem
from pipemon.ingest import limits
from pipemon.ingest.common import (
    output_tail,
    decoded_items,
    event_key,
    iso,
    parse_time,
    scrub_nul,
    split_items,
    struct_problems,
)
from pipemon.model import EVENT_WORDS, Event, EventType, RunRef, Source, event_type_of, split_pipeline_key

MAX_BATCH = 10_000

Name = Annotated[str, msgspec.Meta(min_length=1)]  # lengths in bytes: limits.py
Time = str | float


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
_EVENT_TYPES = ", ".join(EVENT_WORDS)


def parse(body: bytes, now: float, horizon: float = math.inf) -> list[Event]:
    """`now`: the time of an event that gives none. `horizon`: how far past `now` an event time may be;
    the HTTP door passes limits.MAX_FUTURE_S, history (replay, tests, the demo) has no clock to be after."""
    items, was_array = split_items(body, MAX_BATCH)
    events: list[Event] = []
    problems: list[Problem] = []
    every = functools.partial(_all_problems, now=now, horizon=horizon)
    nul = b"\\u0000" in body  # NUL can only come as this escape: most bodies need no item checked
    for prefix, raw, item in decoded_items(items, was_array, _DECODER, every, problems):
        try:
            got = _normalize(item, raw, prefix, now, horizon)
            if nul and b"\\u0000" in bytes(raw):
                got = [scrub_nul(ev, prefix) for ev in got]
            events.extend(got)
        except InvalidEvent as e:
            problems.extend(e.problems)
    if problems:
        bad = len({p.loc.split(".")[0] for p in problems})
        what = f"{bad} of {len(items)} events are invalid; none was stored" if was_array else "invalid event"
        raise InvalidEvent(what, problems)
    return events


def _all_problems(raw: msgspec.Raw, prefix: str, now: float, horizon: float) -> list[Problem]:
    """msgspec stops at the first bad field; go field by field to name every one, limits included."""
    def check(path: str, value: Any, loc: str) -> list[Problem]:
        return _field_limits(path, value, loc, now, horizon)

    out = struct_problems(bytes(raw), NativeEvent, prefix, forbid_unknown=True, check=check)
    try:
        obj = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
        etype = msgspec.json.decode(obj["type"]) if "type" in obj else None
    except (msgspec.ValidationError, msgspec.DecodeError):
        etype = None
    if isinstance(etype, str) and event_type_of(etype) is None:
        out.append(Problem(f"{prefix}.type", f"unknown event type {etype!r}; expected one of {_EVENT_TYPES}"))
    return out or [Problem(prefix, "invalid event")]


def _field_limits(path: str, value: Any, loc: str, now: float, horizon: float) -> list[Problem]:
    """The limits of one decoded field (the same rules as limits.event_problems, for a decode that failed
    elsewhere in the event)."""
    if path in _ID_PATHS:
        return limits.ident(value, loc)
    if path == "pipeline":  # namespace/name: each part within the limit
        ns, _, name = value.rpartition("/")
        return limits.ident(ns, loc + " (namespace part)") + limits.ident(name, loc + " (name part)")
    if path in ("inputs", "outputs"):
        return limits.datasets(value, loc)
    if path == "metrics":
        return limits.metrics(value, loc)
    if path in ("rows", "bytes", "duration_s"):
        return limits.number(value, loc, lo=0.0)
    if path in ("event_time", "nominal_time") and value is not None:
        try:
            return limits.event_time(parse_time(value, loc), loc, now, horizon,
                                     numeric=not isinstance(value, str))
        except InvalidEvent as e:
            return e.problems
    return []


_ID_PATHS = frozenset({"namespace", "name", "run_id", "event_id", "team", "parent.namespace", "parent.name",
                       "parent.run_id"})



def _normalize(e: NativeEvent, raw: msgspec.Raw, prefix: str, now: float, horizon: float) -> list[Event]:
    problems = _typed_limits(e, len(raw), prefix)
    etype = event_type_of(e.type)
    if etype is None:
        problems.append(Problem(f"{prefix}.type",
                                f"unknown event type {e.type!r}; expected one of {_EVENT_TYPES}"))
    ns, name = e.namespace, e.name
    if e.pipeline is not None:
        if ns is not None or name is not None:
            problems.append(Problem(f"{prefix}.pipeline",
                                    "give either pipeline or namespace + name, not both"))
        else:
            try:
                ns, name = split_pipeline_key(e.pipeline)
            except ValueError as err:
                problems.append(Problem(f"{prefix}.pipeline", str(err)))
    elif ns is None or name is None:
        problems.append(Problem(f"{prefix}.{'name' if ns else 'namespace'}",
                                "required: namespace and name (or pipeline: \"namespace/name\")"))
    if e.duration_s is not None and etype is not None and not etype.is_terminal:
        problems.append(Problem(f"{prefix}.duration_s",
                                "only a COMPLETE, FAIL or ABORT event may carry a duration"))
    t = now
    nominal = None
    for f in ("event_time", "nominal_time"):
        value = getattr(e, f)
        if value is not None:
            try:
                parsed = parse_time(value, f"{prefix}.{f}")
            except InvalidEvent as bad:
                problems += bad.problems
                continue
            problems += limits.event_time(parsed, f"{prefix}.{f}", now, horizon,
                                          numeric=not isinstance(value, str))
            if f == "event_time":
                t = parsed
            else:
                nominal = parsed
    if e.duration_s is not None and not problems and t - e.duration_s < 0:
        problems.append(Problem(f"{prefix}.duration_s", f"a run of {e.duration_s:g} s ending at {iso(t)} "
                                                        "would start before 1970-01-01"))
    if problems:
        raise InvalidEvent("invalid event", problems)
    assert ns is not None and name is not None and etype is not None

    pipeline = f"{ns}/{name}"
    run_id = e.run_id
    if run_id is None and (etype is EventType.START or e.duration_s is not None):
        # A new run without a producer id: derive it from event_id so a retry lands on the same run.
        run_id = (str(uuid.uuid5(uuid.NAMESPACE_URL, pipeline + "#" + e.event_id)) if e.event_id
                  else str(uuid.uuid4()))
    if e.event_id is not None:
        key = event_key(t if e.event_time is not None else None, "n", pipeline, e.event_id)
    elif e.run_id is not None:
        key = event_key(t, "n", pipeline, e.run_id, etype.value, repr(t))
    else:
        key = event_key(t, uuid.uuid4().hex)  # nothing identifies it: every delivery is a new event
    metrics = dict(e.metrics) if e.metrics else {}
    rows = metrics.pop("rows", e.rows)
    byts = metrics.pop("bytes", e.bytes)
    error = e.error
    err_msg, err_type = (error, None) if isinstance(error, str) else (
        (error.message, error.type) if error else (None, None))
    parent = RunRef(e.parent.namespace, e.parent.name, e.parent.run_id) if e.parent else None
    event = Event(
        key=key, source=Source.NATIVE, namespace=ns, name=name, run_id=run_id or "", type=etype, time=t,
        parent=parent, rows=rows, bytes=byts, metrics=metrics or None, error_message=err_msg,
        error_type=err_type,
        inputs=tuple(e.inputs), outputs=tuple(e.outputs), team=e.team, nominal_time=nominal,
        log=output_tail(e.log), raw=bytes(raw),
    )
    if e.duration_s is None:
        return [event]
    began = t - e.duration_s
    start = Event(key=event_key(began, key, "start"), source=Source.NATIVE, namespace=ns, name=name,
                  run_id=event.run_id, type=EventType.START, time=began, parent=parent, team=e.team,
                  nominal_time=nominal)
    return [start, event]


def _typed_limits(e: NativeEvent, raw_len: int, prefix: str) -> list[Problem]:
    """The limits of a decoded event but its times (the hot path: a few µs)."""
    out: list[Problem] = []
    if raw_len > limits.MAX_ID_BYTES:  # else no string in it can be longer: UTF-8 never outgrows its JSON
        for f in ("namespace", "name", "pipeline", "run_id", "event_id", "team", "inputs", "outputs"):
            v = getattr(e, f)
            if v:
                out += _field_limits(f, v, f"{prefix}.{f}", 0.0, 0.0)
        if e.parent is not None:
            for f in ("namespace", "name", "run_id"):
                out += limits.ident(getattr(e.parent, f), f"{prefix}.parent.{f}")
    if e.metrics:
        out += limits.metrics(e.metrics, f"{prefix}.metrics")
    for f in ("rows", "bytes", "duration_s"):
        v = getattr(e, f)
        if v is not None:
            out += limits.number(v, f"{prefix}.{f}", lo=0.0)
    return out


def schema_components(ref_template: str = "#/components/schemas/{name}") -> dict[str, Any]:
    """The JSON schemas of the native event and its parts, as OpenAPI components."""
    _, components = msgspec.json.schema_components([NativeEvent], ref_template=ref_template)
    return components
