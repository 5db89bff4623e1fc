"""Shared, session-scoped simulations: built once, read by many tests (the sim is pure)."""
from __future__ import annotations

import pytest

from pipemon import sim

DAY_S = 86400.0


@pytest.fixture(scope="session")
def fleet() -> sim.Fleet:
    return sim.build_fleet(seed=0)


@pytest.fixture(scope="session")
def two_days(fleet: sim.Fleet) -> tuple[sim.Feeder, list[dict]]:
    """The default demo: OpenLineage events of the first two simulated days, and its feeder."""
    feeder = sim.Feeder(fleet, sim.DEFAULT_START)
    return feeder, list(feeder.history(sim.DEFAULT_START, sim.DEFAULT_START + 2 * DAY_S))


@pytest.fixture(scope="session")
def events(two_days: tuple[sim.Feeder, list[dict]]) -> list[dict]:
    return two_days[1]


@pytest.fixture(scope="session")
def truth(two_days: tuple[sim.Feeder, list[dict]]) -> list[sim.Incident]:
    return two_days[0].incidents(sim.DEFAULT_START, sim.DEFAULT_START + 2 * DAY_S)


@pytest.fixture(scope="session")
def records(fleet: sim.Fleet) -> list[sim.RunRecord]:
    """Fast-path runs of the first three days, same scenario as `events`."""
    return list(sim.run_records(fleet, sim.DEFAULT_START, sim.DEFAULT_START + 3 * DAY_S))
