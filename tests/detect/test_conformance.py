"""Every detector passes the same four checks (after river's `checks`): it is deterministic, scoring
does not change its state, its state round-trips through JSON (and it behaves the same afterwards),
and a cold start raises nothing."""
from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pipemon.engine.detect import DetectorSuite, DetectSpec
from pipemon.engine.detect.cadence import CadenceDetector
from pipemon.engine.detect.failures import FailureRate
from pipemon.engine.detect.metric import MIN_RUNS, MetricBaseline
from pipemon.engine.detect.schema import SchemaWatch
from pipemon.engine.schedule import Schedule
from tests.detect._data import DAY, HOUR, T0, daily, hourly, replay, series

N = 400  # observations fed in each check


@dataclass
class Adapter:
    """How to drive one detector through a deterministic stream of N inputs."""

    make: Callable[[], Any]
    step: Callable[[Any, int], list[Any]]  # feed input i (score, then learn); returns what it raised
    peek: Callable[[Any, int], Any]  # score input i without learning it
    dump: Callable[[Any], dict[str, Any]]
    load: Callable[[dict[str, Any]], Any]
    cold: int  # inputs during which nothing may be raised


def _rows(i: int) -> float:
    rng = random.Random(i)
    t = T0 + i * HOUR
    weekend = 0.5 if (t // DAY + 3) % 7 >= 5 else 1.0
    spike = 8.0 if i % 97 == 50 else 1.0  # an anomaly now and then, so findings happen
    return 1e5 * weekend * spike * math.exp(0.4 * math.sin(2 * math.pi * (t % DAY) / DAY) + rng.gauss(0, 0.05))


def _metric(log: bool) -> Adapter:
    def step(b: MetricBaseline, i: int) -> list[Any]:
        res, _, report = b.update(T0 + i * HOUR, _rows(i) if log else math.log(_rows(i)), 4.0)
        return [res] if report else []

    return Adapter(lambda: MetricBaseline(log), step,
                   lambda b, i: (b.score(T0 + i * HOUR, _rows(i)), b.band(T0 + i * HOUR, 4.0),
                                 b.upper(T0 + i * HOUR, 4.0), b.reports(5.0)),
                   MetricBaseline.to_json, MetricBaseline.from_json, MIN_RUNS)


def _failed(i: int) -> bool:
    return random.Random(i).random() < 0.03 or 200 <= i < 205  # isolated failures, and one burst


def _failures() -> Adapter:
    def step(f: FailureRate, i: int) -> list[Any]:
        out = f.observe("p", f"r{i}", T0 + i * HOUR, _failed(i), 1.0)
        return [out] if out else []

    return Adapter(FailureRate, step, lambda f, i: f.score(_failed(i)), FailureRate.to_json,
                   FailureRate.from_json, 20)


def _start(i: int) -> float | None:
    """Hourly starts with jitter; a few hours are skipped (missing runs)."""
    if i % 53 == 30:
        return None
    return T0 + i * HOUR + random.Random(i).expovariate(1 / 40.0)


def _cadence(declared: bool) -> Adapter:
    def make() -> CadenceDetector:
        return CadenceDetector(Schedule.declared("0 * * * *") if declared else None)

    def step(c: CadenceDetector, i: int) -> list[Any]:
        out = list(c.on_due("p", T0 + i * HOUR - 1.0, 1.0, running=False))
        s = _start(i)
        if s is not None:
            f = c.on_start("p", f"r{i}", s)
            out += [f] if f else []
        return out

    return Adapter(make, step, lambda c, i: (c.due(1.0), c.schedule and c.schedule.next_expected(T0 + i * HOUR)),
                   CadenceDetector.to_json, CadenceDetector.from_json, 1 if declared else 24 * 8)


def _schemas(i: int) -> dict[str, tuple[tuple[str, str], ...]]:
    cols = [("id", "int"), ("name", "text")] + ([("email", "text")] if i >= 200 else [])
    return {"db.users": tuple(cols)}


def _schema() -> Adapter:
    return Adapter(SchemaWatch, lambda w, i: w.observe("p", f"r{i}", T0 + i, _schemas(i)), lambda w, i: None,
                   SchemaWatch.to_json, SchemaWatch.from_json, 1)


def _suite() -> Adapter:
    runs = series(hourly(N / 24 + 1), rows=lambda t: 1e5 * (8.0 if int((t - T0) // HOUR) % 97 == 50 else 1.0))

    def make() -> DetectorSuite:
        s = DetectorSuite()
        s.configure("p", DetectSpec(cron="0 * * * *", max_duration_s=3 * HOUR))
        return s

    def step(s: DetectorSuite, i: int) -> list[Any]:
        return replay(s, "p", runs[i:i + 1])

    def load(d: dict[str, Any]) -> DetectorSuite:
        s = DetectorSuite()
        s.load_json("p", d)
        return s

    return Adapter(make, step, lambda s, i: (s.next_due(), s.schedule("p") and s.schedule("p").describe()),
                   lambda s: s.to_json("p"), load, MIN_RUNS)


ADAPTERS = {"metric-log": _metric(True), "metric-linear": _metric(False), "failures": _failures(),
            "cadence-declared": _cadence(True), "cadence-learned": _cadence(False), "schema": _schema(),
            "suite": _suite()}
params = pytest.mark.parametrize("name", list(ADAPTERS))


def _run(a: Adapter, det: Any, lo: int, hi: int) -> list[list[Any]]:
    return [a.step(det, i) for i in range(lo, hi)]


@params
def test_deterministic(name: str) -> None:
    a = ADAPTERS[name]
    d1, d2 = a.make(), a.make()
    assert repr(_run(a, d1, 0, N)) == repr(_run(a, d2, 0, N))
    assert a.dump(d1) == a.dump(d2)


@params
def test_it_raises_something(name: str) -> None:
    """The other checks mean little if the stream never makes the detector speak."""
    a = ADAPTERS[name]
    assert any(_run(a, a.make(), 0, N))


@params
def test_scoring_does_not_change_state(name: str) -> None:
    a = ADAPTERS[name]
    det = a.make()
    for i in range(N):
        before = json.dumps(a.dump(det), sort_keys=True)
        a.peek(det, i)
        assert json.dumps(a.dump(det), sort_keys=True) == before
        a.step(det, i)


@params
def test_state_round_trips_through_json(name: str) -> None:
    a = ADAPTERS[name]
    det = a.make()
    _run(a, det, 0, N // 2)
    state = a.dump(det)
    back = a.load(json.loads(json.dumps(state)))  # plain JSON types only
    assert a.dump(back) == state
    # ... and the restored detector behaves exactly like the one that never stopped
    assert repr(_run(a, back, N // 2, N)) == repr(_run(a, det, N // 2, N))
    assert a.dump(back) == a.dump(det)


@params
def test_cold_start_raises_nothing(name: str) -> None:
    a = ADAPTERS[name]
    assert not any(_run(a, a.make(), 0, a.cold))


def test_state_is_small() -> None:
    """<= 2 KB of JSON per pipeline-metric (schema state is the schema itself and is not counted)."""
    s = ADAPTERS["suite"].make()
    replay(s, "p", series(daily(120), rows=lambda t: 1e6, duration=lambda t: 900.0))
    d = s.to_json("p")
    for part in [*d["metrics"].values(), d["cadence"], d["failures"]]:
        assert len(json.dumps(part)) <= 2048, part
