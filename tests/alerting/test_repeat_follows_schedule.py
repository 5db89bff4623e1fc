"""Repeats follow the pipeline's schedule: a reminder no more often than once an interval of it, within
[repeat_interval, max_repeat_interval]. A daily failure is repeated daily, an hourly one every 4 h."""
from __future__ import annotations

import pytest

from pipemon.config import loads
from pipemon.engine.route import compile_routes
from tests.alerting.harness import Harness, at
from tests.alerting.receiver import Receiver

H = 3600.0


@pytest.mark.parametrize("route, cadence, expect", [
    ("{}", None, 4 * H),               # no schedule known: repeat_interval (4 h)
    ("{}", 15 * 60, 4 * H),            # every 15 min: never more often than repeat_interval
    ("{}", H, 4 * H),
    ("{}", 12 * H, 12 * H),            # twice daily: once a run
    ("{}", 24 * H, 24 * H),            # daily: daily
    ("{}", 7 * 24 * H, 24 * H),        # weekly: at most a day apart
    ("{repeat_interval: 1h}", 2 * H, 2 * H),
    ("{repeat_interval: 4h, max_repeat_interval: 4h}", 24 * H, 4 * H),   # turned off: Alertmanager's
    ("{repeat_interval: 6h, max_repeat_interval: 2h}", 24 * H, 6 * H),   # the floor wins
])
def test_repeat_after(route, cadence, expect):
    node = compile_routes(loads(f"route: {route}\n").route)
    assert node.repeat_after(cadence) == expect


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def config(url: str, extra: str = "") -> str:
    return f"""
pipelines:
  - match: "pay/daily"
    team: payments
    schedule: "0 2 * * *"
    grace: 1h
receivers:
  - name: pay
    webhook: {{url: "{url}/pay"}}
route:
  receiver: pay
  group_wait: 0s
{extra}"""


@pytest.mark.parametrize("extra, repeats", [("", 1), ("  max_repeat_interval: 4h\n", 6)])
def test_a_daily_failure_is_repeated_once_a_day_not_every_four_hours(tmp_path, receiver, extra, repeats):
    hs = Harness(f"sqlite:///{tmp_path}/r.db", config(receiver.url, extra), at(2, 0))
    try:
        hs.run("pay/daily", "d0", at(2, 0), at(2, 10), ok=False)
        hs.advance(at(2, 11))
        hs.settle()
        assert receiver.actions("/pay") == ["trigger"]
        hs.advance(at(3, 0, day=1), step=300)  # the next day's run (02:00) never comes
        hs.settle()
        assert receiver.actions("/pay") == ["trigger"] + ["repeat"] * repeats
    finally:
        hs.close()
