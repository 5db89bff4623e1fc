"""Per-receiver rate limits: configured, or the strictest default of the receiver's integrations."""
from __future__ import annotations

import pytest

from pipemon.config import loads as load_settings_text
from pipemon.errors import ConfigError
from pipemon.notify import build_receivers
from pipemon.notify.delivery import Deliverer, _Bucket
from tests.notify.conftest import ROUTING_KEY, SLACK_URL

HOOK = {"url": "https://hooks.example.com/x"}


def test_a_configured_limit_wins_over_the_integrations_defaults():
    r = build_receivers([{"name": "a", "rate_limit": {"per_second": 0.5, "burst": 3},
                          "slack": {"webhook_url": SLACK_URL}}])
    assert r["a"].rate_limit == (0.5, 3)


@pytest.mark.parametrize("integrations, expected", [
    ({"webhook": HOOK}, (20.0, 50)),
    ({"pagerduty": {"routing_key": ROUTING_KEY}}, (2.0, 20)),
    ({"slack": {"webhook_url": SLACK_URL}}, (1.0, 10)),
    ({"slack": {"webhook_url": SLACK_URL}, "webhook": HOOK, "pagerduty": {"routing_key": ROUTING_KEY}},
     (1.0, 10)),
])
def test_without_a_limit_the_strictest_integration_sets_it(integrations, expected):
    assert build_receivers([{"name": "a", **integrations}])["a"].rate_limit == expected


@pytest.mark.parametrize("limit, problem", [
    ({"per_second": 0}, "receivers[0].rate_limit.per_second: Input should be greater than 0"),
    ({"per_second": 1, "burst": 0},
     "receivers[0].rate_limit.burst: Input should be greater than or equal to 1"),
    ({"per_minute": 1}, "receivers[0].rate_limit.per_minute: unknown key"),
])
def test_a_bad_limit_is_named(limit, problem):
    with pytest.raises(ConfigError) as e:
        build_receivers([{"name": "a", "rate_limit": limit, "webhook": HOOK}])
    assert problem in [str(p) for p in e.value.problems]


def test_the_config_file_carries_the_limit_and_errors_name_the_line():
    ok = load_settings_text("receivers:\n  - name: a\n    rate_limit: {per_second: 5, burst: 2}\n"
                            "    webhook: {url: 'https://x.example'}\n")
    assert ok.receivers[0].rate_limit.per_second == 5
    with pytest.raises(ConfigError) as e:
        load_settings_text("receivers:\n  - name: a\n    rate_limit: {per_second: -1}\n"
                           "    webhook: {url: 'https://x.example'}\n")
    assert "<config>:3: receivers[0].rate_limit.per_second: Input should be greater than 0" in str(e.value)


def test_the_bucket_lets_a_burst_through_then_paces_at_the_rate():
    b = _Bucket(rate=2.0, burst=3, tokens=3, at=100.0)
    assert [b.wait(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.wait(100.0) == pytest.approx(0.5)   # empty: the next token is half a second away
    assert b.wait(100.25) == pytest.approx(0.25)  # waiting takes nothing
    assert b.wait(100.5) == 0.0
    assert b.wait(110.0) == 0.0 and b.tokens == pytest.approx(2.0)  # refills to the burst, no further


def test_the_deliverer_paces_each_receiver_by_its_own_limit():
    receivers = build_receivers([
        {"name": "chat", "slack": {"webhook_url": SLACK_URL}},
        {"name": "hook", "rate_limit": {"per_second": 100, "burst": 5}, "webhook": HOOK},
    ])
    d = Deliverer(None, receivers)
    try:
        assert (d.bucket("chat").rate, d.bucket("chat").burst) == (1.0, 10)
        assert (d.bucket("hook").rate, d.bucket("hook").burst) == (100, 5)
        assert d.bucket("chat") is d.bucket("chat")
    finally:
        d.http.close()
