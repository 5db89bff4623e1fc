"""The OpenLineage front door: `POST /api/v1/lineage` (the default path of openlineage-python's
HttpTransport).

Spec 2.x RunEvents map to pipemon events:
  job.namespace / job.name                     -> the pipeline (or, with a parent facet, a task of the
                                                  parent's run)
  run.facets.parent (and its `root`)           -> the run this one rolls up into
  run.facets.errorMessage                      -> error message and type (programmingLanguage)
  run.facets.nominalTime.nominalStartTime      -> scheduled time
  outputs[].outputFacets.outputStatistics      -> rows (rowCount) and bytes (size), summed over outputs
  outputs[].facets.schema.fields               -> output schemas (schema-change detection)
  inputs / outputs                             -> lineage edges between pipelines through datasets
  job.facets.ownership.owners                  -> owner team ("team:payments" or type "team")
  job.facets.jobType.integration               -> AIRFLOW, DBT, SPARK …
  run.facets.errorMessage.stackTrace           -> the run's log excerpt (its last 8 KB), the exception type
  ABORT of a dbt node (jobType.integration DBT, a parent, no errorMessage) -> a skipped task: dbt-ol
                                                  reports a node dbt skipped after an upstream failure so
  run.facets.airflowState.tasksState           -> every task of a DAG run and its state (those never run too)
  run.facets.airflow / airflowDagRun .dag      -> the DAG's timetable (its schedule) and owner (the team)
JobEvents (no run) register the job, its datasets and owner; DatasetEvents are accepted and kept raw.
Events are keyed by job, run id, event type and event time: the client's retries are stored once.
Facets stay raw (msgspec.Raw) until asked for: most are never decoded.
"""
from __future__ import annotations

import functools
import math
from typing import Annotated

import msgspec
from croniter import croniter

from pipemon.errors import InvalidEvent, Problem
from pipemon.ingest import limits
from pipemon.ingest.common import (decoded_items, event_key, output_tail, parse_time, problem_from, scrub_nul,
                                   split_items, struct_problems)
from pipemon.model import MANUAL_SCHEDULE, Event, EventType, RunRef, Source

MAX_BATCH = 10_000
Name = Annotated[str, msgspec.Meta(min_length=1)]  # lengths in bytes: limits.py
Facets = dict[str, msgspec.Raw]


class Job(msgspec.Struct):
    namespace: Name
    name: Name
    facets: Facets = {}


class RunInfo(msgspec.Struct):
    runId: Name
    facets: Facets = {}


class Dataset(msgspec.Struct):
    namespace: str
    name: str
    facets: Facets = {}
    inputFacets: Facets = {}
    outputFacets: Facets = {}


class OLEvent(msgspec.Struct):
    eventTime: str
    producer: str = ""
    schemaURL: str = ""
    eventType: str | None = None
    run: RunInfo | None = None
    job: Job | None = None
    inputs: list[Dataset] = []
    outputs: list[Dataset] = []
    dataset: Dataset | None = None


# The facets we read, decoded on demand.
class _RunRef(msgspec.Struct):
    runId: str


class _JobRef(msgspec.Struct):
    namespace: str
    name: str


class _Root(msgspec.Struct):
    run: _RunRef
    job: _JobRef


class _Parent(msgspec.Struct):
    run: _RunRef
    job: _JobRef
    root: _Root | None = None


class _ErrorMessage(msgspec.Struct):
    message: str = ""
    programmingLanguage: str | None = None
    stackTrace: str | None = None


class _NominalTime(msgspec.Struct):
    nominalStartTime: str


class _Owner(msgspec.Struct):
    name: str
    type: str | None = None


class _Ownership(msgspec.Struct):
    owners: list[_Owner] = []


class _OutputStatistics(msgspec.Struct):
    rowCount: float | None = None
    size: float | None = None


class _Field(msgspec.Struct):
    name: str
    type: str | None = None


class _Schema(msgspec.Struct):
    fields: list[_Field] = []


class _JobType(msgspec.Struct):
    integration: str | None = None


_DECODER = msgspec.json.Decoder(OLEvent)
_TYPES = {t.value: t for t in EventType} | {"OTHER": EventType.HEARTBEAT}


def _facet(facets: Facets, name: str, typ: type, loc: str, problems: list[Problem]):
    raw = facets.get(name)
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=typ)
    except msgspec.ValidationError as e:
        problems.append(problem_from(e, loc))
    except msgspec.DecodeError:  # pragma: no cover - the envelope already parsed
        problems.append(Problem(loc, "not valid JSON"))
    return None


def parse(body: bytes, now: float, horizon: float = math.inf) -> list[Event]:
    """`horizon`: how far past `now` an event time may be; the HTTP door passes limits.MAX_FUTURE_S,
    history (replay, tests, the demo) has no clock to be after."""
    items, was_array = split_items(body, MAX_BATCH)
    out: list[Event] = []
    problems: list[Problem] = []
    every = functools.partial(_all_problems, now=now, horizon=horizon)
    for prefix, raw, ev in decoded_items(items, was_array, _DECODER, every, problems):
        try:
            got = _normalize(ev, raw, prefix)
            if got is not None and not limits.plainly_within(got, now, horizon):
                lim = limits.event_problems(got, _locs(prefix), now, horizon)
                if lim:
                    raise InvalidEvent("invalid OpenLineage event", lim)
            if got is not None and got.raw is not None and b"\\u0000" in got.raw:
                got = scrub_nul(got, prefix)
        except InvalidEvent as e:
            problems.extend(e.problems)
            continue
        if got is not None:
            out.append(got)
    if problems:
        raise InvalidEvent("invalid OpenLineage event" + ("s; none was stored" if was_array else ""),
                           problems)
    return out


# --- validation and limits (pipemon.ingest.limits), apart from the mapping above -----------------------

def _locs(prefix: str) -> dict[str, str]:
    """Where each field of the normalized event comes from in an OpenLineage event."""
    parent, root = f"{prefix}.run.facets.parent", f"{prefix}.run.facets.parent.root"
    stats = f"{prefix}.outputs[].outputFacets.outputStatistics"
    return {
        "namespace": f"{prefix}.job.namespace", "name": f"{prefix}.job.name", "run_id": f"{prefix}.run.runId",
        "team": f"{prefix}.job.facets.ownership.owners",
        "integration": f"{prefix}.job.facets.jobType.integration",
        "parent.namespace": f"{parent}.job.namespace", "parent.name": f"{parent}.job.name",
        "parent.run_id": f"{parent}.run.runId", "root.namespace": f"{root}.job.namespace",
        "root.name": f"{root}.job.name", "root.run_id": f"{root}.run.runId",
        "inputs": f"{prefix}.inputs", "outputs": f"{prefix}.outputs",
        "rows": f"{stats}.rowCount", "bytes": f"{stats}.size", "time": f"{prefix}.eventTime",
        "nominal_time": f"{prefix}.run.facets.nominalTime.nominalStartTime",
    }


def _all_problems(raw: msgspec.Raw, prefix: str, now: float, horizon: float) -> list[Problem]:
    """The decoder stops at the first bad field; name every one (a bad run.runId and a missing eventTime)."""
    def check(path: str, value: object, loc: str) -> list[Problem]:
        if path in ("job.namespace", "job.name", "run.runId") and isinstance(value, str):
            return limits.ident(value, loc)
        if path in ("inputs", "outputs") and isinstance(value, list):
            return limits.datasets((f"{d.namespace}/{d.name}" for d in value), loc)
        if path == "eventTime" and isinstance(value, str):
            try:
                return limits.event_time(parse_time(value, loc), loc, now, horizon, numeric=False)
            except InvalidEvent as e:
                return e.problems
        return []
    return struct_problems(bytes(raw), OLEvent, prefix, check=check) or [Problem(prefix, "invalid event")]


def _normalize(ev: OLEvent, raw: msgspec.Raw, prefix: str) -> Event | None:
    problems: list[Problem] = []
    t = parse_time(ev.eventTime, f"{prefix}.eventTime")
    if ev.run is None:
        if ev.job is None and ev.dataset is None:
            raise InvalidEvent("invalid OpenLineage event", [Problem(
                prefix, "a RunEvent needs run and job; a JobEvent job; a DatasetEvent dataset")])
        if ev.job is None:
            return None  # a DatasetEvent: accepted, nothing to track yet
    if ev.job is None:
        raise InvalidEvent("invalid OpenLineage event",
                           [Problem(f"{prefix}.job", "required field is missing")])
    if ev.eventType is None:
        etype = EventType.HEARTBEAT  # the spec makes eventType optional: an event that changes no state
    else:
        known = _TYPES.get(ev.eventType.upper())
        if known is None:
            raise InvalidEvent("invalid OpenLineage event", [Problem(
                f"{prefix}.eventType", f"unknown event type {ev.eventType!r}; expected one of "
                "START, RUNNING, COMPLETE, ABORT, FAIL, OTHER")])
        etype = known
    job, run = ev.job, ev.run
    run_facets = run.facets if run else {}
    loc = f"{prefix}.run.facets"

    parent = root = None
    p = _facet(run_facets, "parent", _Parent, f"{loc}.parent", problems)
    if p is not None:
        parent = RunRef(p.job.namespace, p.job.name, p.run.runId)
        if p.root is not None:
            root = RunRef(p.root.job.namespace, p.root.job.name, p.root.run.runId)
    err_msg = err_type = trace = None
    em = _facet(run_facets, "errorMessage", _ErrorMessage, f"{loc}.errorMessage", problems)
    if em is not None:
        err_msg, err_type = em.message or None, em.programmingLanguage
        trace, exc_type = _trace_tail(em.stackTrace)
        err_type = exc_type or err_type
    dag = _scheduler_facets(run_facets)
    nominal = None
    nt = _facet(run_facets, "nominalTime", _NominalTime, f"{loc}.nominalTime", problems)
    if nt is not None:
        try:
            nominal = parse_time(nt.nominalStartTime, f"{loc}.nominalTime.nominalStartTime")
        except InvalidEvent as e:
            problems.extend(e.problems)
    team = None
    own = _facet(job.facets, "ownership", _Ownership, f"{prefix}.job.facets.ownership", problems)
    if own is not None:
        team = _team_of(own.owners)
    jt = _facet(job.facets, "jobType", _JobType, f"{prefix}.job.facets.jobType", problems)

    rows = byts = None
    schemas: dict[str, tuple[tuple[str, str], ...]] = {}
    for k, d in enumerate(ev.outputs):
        dloc = f"{prefix}.outputs[{k}]"
        st = _facet(d.outputFacets, "outputStatistics", _OutputStatistics,
                    f"{dloc}.outputFacets.outputStatistics", problems)
        if st is not None:
            if st.rowCount is not None:
                rows = (rows or 0.0) + st.rowCount
            if st.size is not None:
                byts = (byts or 0.0) + st.size
        sc = _facet(d.facets, "schema", _Schema, f"{dloc}.facets.schema", problems)
        if sc is not None:
            schemas[f"{d.namespace}/{d.name}"] = tuple((f.name, f.type or "") for f in sc.fields)
    if problems:
        raise InvalidEvent("invalid OpenLineage event", problems)

    run_id = run.runId if run else ""
    return Event(
        key=event_key(t, "ol", job.namespace, job.name, run_id, ev.eventType or "", ev.eventTime),
        source=Source.OPENLINEAGE, namespace=job.namespace, name=job.name, run_id=run_id,
        type=etype if run else EventType.HEARTBEAT, time=t, parent=parent, root=root, rows=rows, bytes=byts,
        error_message=err_msg, error_type=err_type,
        inputs=tuple(f"{d.namespace}/{d.name}" for d in ev.inputs),
        outputs=tuple(f"{d.namespace}/{d.name}" for d in ev.outputs),
        team=team or (dag.owner if parent is None else None), nominal_time=nominal,
        integration=jt.integration if jt else None, schemas=schemas or None, raw=bytes(raw), log=trace,
        task_states=dag.task_states, schedule=dag.schedule, schedule_tz=dag.timezone,
        root_team=dag.owner if parent is not None else None,
        skipped=(etype is EventType.ABORT and parent is not None and em is None and jt is not None
                 and (jt.integration or "").upper() == "DBT"),
    )


AIRFLOW_DEFAULT_OWNER = "airflow"  # Airflow's default `owner` in default_args, in both facets


def _team_of(owners: list[_Owner]) -> str | None:
    for o in owners:
        if (o.type or "").lower() == "team":
            return o.name.removeprefix("team:")
        if o.name.startswith("team:"):
            return o.name[5:]
    named = [o.name for o in owners if o.name != AIRFLOW_DEFAULT_OWNER]  # Airflow's default: no team
    return named[0] if named else None


# --- what schedulers say of the DAG: Airflow's provider facets -------------------------------------------
# They are the provider's own (not in the OpenLineage spec) and vary between versions: read leniently,
# never a reason to refuse an event.

# Airflow's schedule presets, as cron (`@once`, `@continuous` and None are no schedule: MANUAL_SCHEDULE).
PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *",
           "@annually": "0 0 1 1 *"}
_NO_SCHEDULE = {"none", "@once", "@continuous", "null", "dataset triggered", "asset triggered"}


class _Timetable(msgspec.Struct):
    expression: str | None = None
    timezone: str | None = None
    delta: float | None = None
    dataset_condition: object | None = None


class _Dag(msgspec.Struct):
    owner: str | None = None
    timetable: _Timetable | None = None
    timetable_summary: str | None = None
    schedule_interval: str | None = None


class _DagHolder(msgspec.Struct):  # `airflow` (task events) and `airflowDagRun` (DAG events)
    dag: _Dag | None = None


class _AirflowState(msgspec.Struct):
    tasksState: dict[str, str | None] = {}


class DagFacts(msgspec.Struct, frozen=True):
    task_states: dict[str, str] | None = None
    schedule: str | None = None  # cron, or MANUAL_SCHEDULE
    timezone: str | None = None
    owner: str | None = None


def _lenient(facets: Facets, name: str, typ: type):
    raw = facets.get(name)
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=typ)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def _scheduler_facets(run_facets: Facets) -> DagFacts:
    """Task states, schedule and owner from Airflow's `airflowState`, `airflowDagRun` and `airflow` facets."""
    states = None
    st = _lenient(run_facets, "airflowState", _AirflowState)
    if st is not None and st.tasksState:
        states = {k: v for k, v in st.tasksState.items() if isinstance(v, str)} or None
    dag = None
    for name in ("airflowDagRun", "airflow"):
        holder = _lenient(run_facets, name, _DagHolder)
        if holder is not None and holder.dag is not None:
            dag = holder.dag
            break
    if dag is None:
        return DagFacts(task_states=states)
    schedule, tz = _schedule_of(dag)
    owner = (dag.owner or "").split(",")[0].strip() or None
    if owner == AIRFLOW_DEFAULT_OWNER:  # what every DAG says unless its author set one: names no team
        owner = None
    return DagFacts(task_states=states, schedule=schedule, timezone=tz, owner=owner)


def _schedule_of(dag: _Dag) -> tuple[str | None, str | None]:
    tt = dag.timetable
    if tt is not None and tt.expression:
        expr = PRESETS.get(tt.expression, tt.expression)
        return (expr, tt.timezone or "UTC") if croniter.is_valid(expr) else (None, None)
    summary = (dag.timetable_summary or dag.schedule_interval or "").strip()
    if summary in PRESETS:
        return PRESETS[summary], (tt.timezone if tt is not None else None) or "UTC"
    no_schedule = summary.lower() in _NO_SCHEDULE or (tt is not None and tt.dataset_condition is not None)
    if tt is not None and tt.delta is None and no_schedule:
        return MANUAL_SCHEDULE, None
    return None, None  # a timedelta or custom timetable: pipemon learns the schedule from the runs


def _trace_tail(stack: str | None) -> tuple[str | None, str | None]:
    """The stack trace's last 8 KB (common.output_tail), and the exception type its last line names
    (`ValueError: …`)."""
    if not stack or not stack.strip():
        return None, None
    lines = [ln.rstrip() for ln in stack.strip().splitlines() if ln.strip()]
    head = lines[-1].split(":", 1)[0].strip()
    exc = head if head and " " not in head and head.replace(".", "").replace("_", "").isalnum() else None
    return output_tail(stack.strip("\n")), exc
