"""The detectors' vocabulary: what goes in (a run, a spec), what comes out (a Finding), and feedback.

Every finding's `score` is on one scale for all detectors: a robust z-like "how far outside normal",
where `ALARM_SCORE` (4.0) is the default alarm line. A detector flags when `score >= ALARM_SCORE /
sensitivity`, so `sensitivity` (default 1.0) is the one knob trading recall for precision: 2.0 alarms
at half the distance, 0.5 at twice the distance. Severity downstream can read the score directly.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from pipemon.model import RunStatus  # one status vocabulary: the detectors see finished runs only

ALARM_SCORE: Final = 4.0
DEFAULT_SENSITIVITY: Final = 1.0


class FindingKind(str, Enum):
    DURATION = "duration"
    VOLUME = "volume"
    VALUE = "value"  # a generic metric series (`pipemon detect --format series`)
    LATE = "late"
    MISSING = "missing"
    EXTRA_RUN = "extra_run"
    FAILURE_RATE = "failure_rate"
    RUNNING_LONG = "running_long"
    SCHEMA_CHANGE = "schema_change"


class Direction(str, Enum):
    HIGH = "high"
    LOW = "low"


class Verdict(str, Enum):
    """An operator's word on a finding; honoured from the next run on."""

    EXPECTED = "expected"  # "new normal": re-baseline to the current level
    INCIDENT = "incident"  # a real problem: keep it out of the baseline, keep alarming


@dataclass(frozen=True, slots=True)
class Finding:
    pipeline_id: str
    kind: FindingKind
    metric: str  # "duration_s", "rows", "bytes", "value", "schedule", "status", "schema:<dataset>"
    time: float  # unix seconds: when the condition was seen (a completion, a start, or a deadline)
    run_id: str | None
    observed: float | None
    expected: float | None
    lower: float | None
    upper: float | None
    score: float
    direction: Direction | None
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline_id": self.pipeline_id,
            "kind": self.kind.value,
            "metric": self.metric,
            "ts": iso_utc(self.time),
            "ts_unix": self.time,
            "run_id": self.run_id,
            "observed": self.observed,
            "expected": self.expected,
            "lower": self.lower,
            "upper": self.upper,
            "score": round(self.score, 3),
            "direction": self.direction.value if self.direction else None,
            "explanation": self.explanation,
        }


@dataclass(frozen=True, slots=True)
class DetectSpec:
    """What the user declared about a pipeline; everything else is learned."""

    cron: str | None = None
    timezone: str = "UTC"
    interval_s: float | None = None  # a plain "every N seconds" schedule when there is no cron
    grace_s: float | None = None  # how late a run may start before it is late; learned when None
    max_duration_s: float | None = None  # running-long rule before (and besides) the learned duration
    sensitivity: float = DEFAULT_SENSITIVITY
    manual: bool = False  # run by hand only (Airflow's schedule=None): no schedule, nothing is ever late
    from_events: bool = False  # cron/timezone/manual came from the producer's events, not from the config
    calendar: str | None = None  # the holiday calendar's name (`calendar: US`), for the record
    holidays: frozenset[int] = frozenset()  # its holidays, days since 1970-01-01 (built at the edge)


@dataclass(frozen=True, slots=True)
class RunObservation:
    """A finished run. `schemas` maps an output dataset to its ((column, type), ...)."""

    run_id: str
    start: float
    end: float
    status: RunStatus
    duration_s: float | None = None
    rows: float | None = None
    bytes: float | None = None
    nominal_time: float | None = None  # the scheduled time the run is for, when the scheduler says
    schemas: dict[str, tuple[tuple[str, str], ...]] | None = None


def iso_utc(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
