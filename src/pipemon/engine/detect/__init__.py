"""Anomaly detectors for pipeline runs: streaming, seasonal, robust, with state as plain JSON.

    base.py      Finding, FindingKind, Direction, DetectSpec, RunObservation, RunStatus, Verdict
    metric.py    duration / rows / bytes / value: a robust seasonal baseline with level-shift handling
    cadence.py   late, missing and extra runs against a declared or learned schedule (engine.schedule)
    failures.py  failure bursts above the pipeline's own failure rate
    schema.py    output schema changes
    suite.py     DetectorSuite: the fleet's state, a timer heap for clock-driven alarms, feedback
    feed.py      the suite over a recorded history, the clock following it (`pipemon detect`'s loop)

Scores share one scale: base.ALARM_SCORE (4.0) is the alarm line at sensitivity 1.0.
"""
from pipemon.engine.detect.base import (
    ALARM_SCORE,
    DEFAULT_SENSITIVITY,
    DetectSpec,
    Direction,
    Finding,
    FindingKind,
    RunObservation,
    RunStatus,
    Verdict,
)
from pipemon.engine.detect.suite import DetectorSuite

__all__ = ["ALARM_SCORE", "DEFAULT_SENSITIVITY", "DetectSpec", "DetectorSuite", "Direction", "Finding",
           "FindingKind", "RunObservation", "RunStatus", "Verdict"]
