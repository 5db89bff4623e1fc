"""The domain: what flows from the front doors through the engine.

Times are unix seconds (float, UTC) everywhere inside pipemon; the edges convert to and from ISO 8601.
Structs are frozen msgspec Structs: as immutable as frozen dataclasses, and several times cheaper to
build on the ingest hot path.
"""
from __future__ import annotations

import builtins
import enum
from typing import Any

import msgspec


class EventType(enum.StrEnum):
    START = "START"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAIL = "FAIL"
    ABORT = "ABORT"
    HEARTBEAT = "HEARTBEAT"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({EventType.COMPLETE, EventType.FAIL, EventType.ABORT})


class Source(enum.StrEnum):
    OPENLINEAGE = "openlineage"
    NATIVE = "native"
    PING = "ping"


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    # A task the orchestrator never ran because something upstream of it failed (dbt's `skipped` node):
    # neither a failure nor a success. Only tasks are skipped; a pipeline's own run never is.
    SKIPPED = "skipped"


STATUS_OF_TERMINAL = {
    EventType.COMPLETE: RunStatus.SUCCEEDED,
    EventType.FAIL: RunStatus.FAILED,
    EventType.ABORT: RunStatus.ABORTED,
}

class EventWord(enum.StrEnum):
    """What happened to a run, in the words clients use: the API's event types (any case), the pings'
    signals (start, fail; a bare ping is a success) and the run statuses the API reports. One vocabulary,
    read by the native door, `pipemon send --status` and the backtest's input."""
    START = "start"
    RUNNING = "running"
    HEARTBEAT = "heartbeat"
    COMPLETE = "complete"
    SUCCESS = "success"
    SUCCEEDED = "succeeded"
    FAIL = "fail"
    FAILURE = "failure"
    FAILED = "failed"
    ABORT = "abort"
    ABORTED = "aborted"
    CANCELLED = "cancelled"
    CANCELED = "canceled"

    @property
    def event_type(self) -> EventType:
        return EVENT_WORDS[self.value]


_SYNONYMS = {EventWord.SUCCESS: EventType.COMPLETE, EventWord.SUCCEEDED: EventType.COMPLETE,
             EventWord.FAILURE: EventType.FAIL, EventWord.FAILED: EventType.FAIL,
             EventWord.ABORTED: EventType.ABORT, EventWord.CANCELLED: EventType.ABORT,
             EventWord.CANCELED: EventType.ABORT}
EVENT_WORDS: dict[str, EventType] = {w.value: _SYNONYMS.get(w) or EventType[w.name] for w in EventWord}


def event_type_of(word: str) -> EventType | None:
    """The event type a client's word means (any case), or None when it is not an EventWord."""
    return EVENT_WORDS.get(word.strip().lower())


class RunRef(msgspec.Struct, frozen=True):
    """A run of a job: the parent of a task run, or the root of a tree of runs."""

    namespace: str
    name: str
    run_id: str


class Event(msgspec.Struct, frozen=True):
    """One run event, normalized from any front door.

    `key` is the idempotency key: a retried event has the same key and is stored once.
    `parent` set means this event is about a task run that rolls up into the parent's run;
    `root`, when the producer says it, is the top of that tree (OpenLineage `parent.root`).
    """

    key: str
    source: Source
    namespace: str
    name: str
    run_id: str
    type: EventType
    time: float
    parent: RunRef | None = None
    root: RunRef | None = None
    rows: float | None = None
    bytes: float | None = None
    metrics: dict[str, float] | None = None
    error_message: str | None = None
    error_type: str | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    team: str | None = None
    nominal_time: float | None = None
    log: str | None = None
    integration: str | None = None
    # Output dataset -> ((column, type), …) when the producer sent a schema facet.
    schemas: dict[str, tuple[tuple[str, str], ...]] | None = None
    raw: builtins.bytes | None = None
    # What a scheduler says of a run's tasks, those that never ran included (Airflow's
    # airflowState.tasksState): task id -> the scheduler's own state word (success, upstream_failed …).
    task_states: dict[str, str] | None = None
    # The schedule of the pipeline this event's run belongs to (the root's, for a task event), when the
    # producer sends it (Airflow's timetable): a cron expression, or MANUAL for a DAG with no schedule.
    schedule: str | None = None
    schedule_tz: str | None = None
    # The owner of the root pipeline, sent with a task event (Airflow's DAG owner in the `airflow` facet).
    root_team: str | None = None
    # An ABORT that says the task never ran (dbt-ol's event for a node dbt skipped): the run is `skipped`.
    skipped: bool = False

    @property
    def pipeline(self) -> str:
        return pipeline_key(self.namespace, self.name)


class Run(msgspec.Struct, frozen=True, gc=False):
    """What pipemon knows of one run, folded from its events in any order (see engine/runs.py).
    gc=False: it holds only strings, numbers and a dict of numbers, so it can be in no reference cycle, and
    the writer's run cache (up to 150,000 runs) stays out of the garbage collector's scans."""

    pipeline: str
    run_id: str
    status: RunStatus
    started_at: float
    ended_at: float | None = None
    start_seen: bool = False
    end_event_time: float | None = None
    last_event_time: float = 0.0
    rows: float | None = None
    bytes: float | None = None
    metrics_time: float | None = None
    metrics: dict[str, float] | None = None
    error_message: str | None = None
    error_type: str | None = None
    log_excerpt: str | None = None
    nominal_time: float | None = None
    parent_run_id: str | None = None
    job: str | None = None  # for a task run: the task's own job id (namespace/name)
    own_events: bool = True  # False for a pending parent: known only through its tasks' events so far
    task_states: dict[str, str] | None = None  # the scheduler's word on each task (see Event.task_states)
    cause: str | None = None  # what broke, from its tasks (engine.runs.what_broke); None when no task failed

    @property
    def duration(self) -> float | None:
        """Known only when both ends were seen."""
        if self.ended_at is None or not self.start_seen:
            return None
        return max(0.0, self.ended_at - self.started_at)

    @property
    def is_task(self) -> bool:
        return self.parent_run_id is not None

    @property
    def counts(self) -> bool:
        """Does this run count in its pipeline's figures? Top-level runs that spoke for themselves: a task
        rolls up into its parent, and a pending parent (tasks seen, none of its own events) waits."""
        return self.parent_run_id is None and self.own_events

    @property
    def failure_text(self) -> str | None:
        """One line for a failed run: what broke (its failing task) when known, else its own error."""
        return (self.cause.split("\n", 1)[0] if self.cause else None) or self.error_message


MANUAL_SCHEDULE = "manual"  # Event.schedule of a pipeline run only by hand (Airflow's schedule=None)


def pipeline_key(namespace: str, name: str) -> str:
    """A pipeline's id: `namespace/name` (the namespace may itself hold `/` or `://`)."""
    return f"{namespace}/{name}"


def split_pipeline_key(key: str) -> tuple[str, str]:
    """Inverse of pipeline_key: the name is the part after the last `/`."""
    ns, sep, name = key.rpartition("/")
    if not sep or not ns or not name:
        raise ValueError(f"pipeline id {key!r} is not of the form namespace/name")
    return ns, name


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


# --- alerting ---------------------------------------------------------------------------------------------

class Severity(enum.StrEnum):
    """PagerDuty's four, most severe first."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def level(self) -> int:
        return _SEVERITY_LEVEL[self]

    @staticmethod
    def of_level(level: int) -> Severity:
        return _SEVERITIES[max(0, min(3, level))]


_SEVERITIES = (Severity.INFO, Severity.WARNING, Severity.ERROR, Severity.CRITICAL)
_SEVERITY_LEVEL = {s: i for i, s in enumerate(_SEVERITIES)}


class AlertState(enum.StrEnum):
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertKind(enum.StrEnum):
    """What an alert is about. The first nine are the health conditions (engine.health.ConditionKind) that
    alerts are made of; the values are what is stored and sent (labels, JSON), so they never change."""

    FAILURE = "failure"
    LATE = "late"
    SLA_MISS = "sla_miss"
    RUNNING_LONG = "running_long"
    DURATION_ANOMALY = "duration_anomaly"
    VOLUME_ANOMALY = "volume_anomaly"
    FAILURE_RATE = "failure_rate"
    EXTRA_RUN = "extra_run"
    SCHEMA_CHANGE = "schema_change"
    UPSTREAM_FAILURE = "upstream_failure"  # a notice to a team downstream of another team's root cause
    RECEIVER_FAILING = "receiver_failing"  # pipemon's own: deliveries to a receiver keep failing
    WATCHDOG = "watchdog"                  # pipemon's own: the cluster's dead man's switch
    TEST = "test"                          # `pipemon receivers test` and the API's test endpoint


class NotifyAction(enum.StrEnum):
    TRIGGER = "trigger"
    REPEAT = "repeat"
    ESCALATE = "escalate"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    TEST = "test"


class AlertView(msgspec.Struct, frozen=True):
    """An alert as a receiver sees it in a notification."""

    fingerprint: str            # stable: pipeline + kind [+ metric]; PagerDuty's dedup_key
    pipeline: str               # namespace/name
    team: str
    kind: AlertKind
    severity: Severity
    state: AlertState
    summary: str                # one line: "payments-airflow/invoices failed: relation … does not exist"
    description: str            # the reason, with evidence
    labels: dict[str, str]      # team, namespace, pipeline, kind, severity, tier, and the pipeline's tags
    started_at: float
    last_seen: float
    occurrences: int = 1
    resolved_at: float | None = None
    run_id: str | None = None
    error: str | None = None
    failed_task: str | None = None
    output: str | None = None         # failure: the failing task's full error, the end of its trace or output
    root_cause: str | None = None     # for upstream_failure and attached alerts: the root pipeline
    root_cause_team: str | None = None
    url: str | None = None            # the dashboard page of the pipeline


class Notification(msgspec.Struct, frozen=True):
    """One message to one receiver: a group of alerts and what happened to them."""

    id: int
    receiver: str
    action: NotifyAction
    group_key: str
    group_labels: dict[str, str]
    alerts: tuple[AlertView, ...]
    time: float
    key: str                    # idempotency key: the same notification is never delivered twice
    external_url: str | None = None
