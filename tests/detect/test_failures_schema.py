"""Failure bursts above the pipeline's own rate; schema changes."""
from __future__ import annotations

import random

import pytest

from pipemon.engine.detect import FindingKind
from pipemon.engine.detect.failures import FailureRate
from pipemon.engine.detect.schema import SchemaWatch


def run_failures(pattern: list[bool], sensitivity: float = 1.0, base_rate: float = 0.02, warm: int = 300,
                 seed: int = 1) -> list[int]:
    """Indexes (into `pattern`) of the runs that raised a finding, after `warm` runs at base_rate."""
    rng = random.Random(seed)
    f = FailureRate()
    for k in range(warm):
        f.observe("p", f"w{k}", float(k), rng.random() < base_rate and k % 7 != 6, sensitivity)
    return [k for k, failed in enumerate(pattern)
            if f.observe("p", f"r{k}", float(warm + k), failed, sensitivity) is not None]


@pytest.mark.parametrize("pattern, base_rate, expected", [
    ([False] * 5 + [True] * 5 + [False] * 5, 0.02, [7]),  # a burst: flagged once, at its 3rd failure
    ([True, False] * 10, 0.02, []),  # failures in isolation are never a burst
    ([False, True, True, False], 0.001, [2]),  # a very reliable pipeline: two in a row is news
    ([True] * 4 + [False], 0.15, []),  # a flaky pipeline (~12 % learned): four in a row is within its normal
    ([True] * 8 + [False], 0.15, [4]),  # ... five are not
])
def test_failure_bursts(pattern: list[bool], base_rate: float, expected: list[int]) -> None:
    assert run_failures(pattern, base_rate=base_rate) == expected


def test_isolated_failures_are_never_flagged_at_any_sensitivity() -> None:
    assert run_failures([True, False] * 20, sensitivity=10.0) == []


def test_cold_start_and_a_burst_stays_out_of_the_rate() -> None:
    f = FailureRate()
    assert all(f.observe("p", f"r{k}", float(k), True, 1.0) is None for k in range(19))  # cold
    g = FailureRate()
    for k in range(200):
        g.observe("p", f"a{k}", float(k), False, 1.0)
    before = g.rate()
    for k in range(6):
        g.observe("p", f"b{k}", 200.0 + k, True, 1.0)
    assert g.rate() < before + 0.02  # the burst after its 2nd failure is not learned
    g.accept_current()  # unless the operator says it is normal
    assert g.rate() > before + 0.02


def test_a_streak_is_judged_against_the_rate_before_it() -> None:
    """A young pipeline (26 clean runs, rate ~1 % with the prior): three failures in a row are a burst.
    Counted in as they came, its first two had raised the rate to 5 % and the third scored 3.9."""
    f = FailureRate()
    for k in range(26):
        f.observe("p", f"a{k}", float(k), False, 1.0)
    found = [f.observe("p", f"b{k}", 26.0 + k, True, 1.0) for k in range(3)]
    assert [x is not None for x in found] == [False, False, True]


def test_an_unflagged_streak_joins_the_rate_when_it_ends() -> None:
    f = FailureRate()
    for k in range(100):
        f.observe("p", f"a{k}", float(k), k % 10 == 0, 1.0)  # a flaky pipeline: 10 %
    before = f.rate()
    f.observe("p", "b0", 100.0, True, 1.0)
    assert f.rate() == before  # held while the streak may still be a burst
    f.observe("p", "b1", 101.0, False, 1.0)
    assert f.rate() > before  # a lone failure: the pipeline's normal failing after all


def cols(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((n.split(":")[0], n.split(":")[1]) for n in names)


@pytest.mark.parametrize("new, words, score", [
    (cols("id:int", "name:text", "email:text"), "added: email", 4.0),
    (cols("id:int"), "dropped: name", 6.0),
    (cols("id:bigint", "name:text"), "retyped: id int->bigint", 6.0),
    (cols("name:text", "id:int"), "columns reordered", 4.0),
])
def test_schema_changes_are_reported_once(new, words: str, score: float) -> None:
    w = SchemaWatch()
    assert w.observe("p", "r1", 1.0, {"db.users": cols("id:int", "name:text")}) == []
    found = w.observe("p", "r2", 2.0, {"db.users": new})
    assert [(f.kind, f.metric, f.score) for f in found] == [(FindingKind.SCHEMA_CHANGE, "schema:db.users", score)]
    assert words in found[0].explanation
    assert w.observe("p", "r3", 3.0, {"db.users": new}) == []  # reported once
    assert w.observe("p", "r4", 4.0, {}) == []  # a run that did not write the dataset says nothing


def test_incident_feedback_keeps_reporting_a_bad_schema() -> None:
    w = SchemaWatch()
    w.observe("p", "r1", 1.0, {"t": cols("id:int")})
    assert w.observe("p", "r2", 2.0, {"t": cols("id:text")})
    w.restore("t")  # the change is a bug
    assert w.observe("p", "r3", 3.0, {"t": cols("id:text")})
