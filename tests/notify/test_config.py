"""Receiver config: strict, one mapping or a list per integration, errors that name the key."""
from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from pipemon.errors import ConfigError
from pipemon.notify import REGISTRY, ReceiverConfig, build_receivers
from pipemon.notify.base import make_registry
from pipemon.notify.pagerduty import PagerDutyChannel
from tests.notify.conftest import ROUTING_KEY, SLACK_URL

SMTP = {"host": "smtp.example.com"}


def errors(items: list) -> list[str]:
    with pytest.raises(ConfigError) as e:
        build_receivers(items)
    return [str(p) for p in e.value.problems]


@pytest.mark.parametrize("item, expected", [
    ({"name": "a", "slack": {"webhok_url": SLACK_URL}},
     ["receivers[0].slack.webhook_url: Field required", "receivers[0].slack.webhok_url: unknown key"]),
    ({"name": "a", "slack": [{"webhook_url": SLACK_URL}, {"webhook_url": SLACK_URL, "channel": "#x"}]},
     ["receivers[0].slack[1].channel: unknown key"]),
    ({"name": "a", "slak": {}},
     ["receivers[0].slak: unknown key (integrations: email, log, pagerduty, slack, webhook)"]),
    ({"name": "a", "slack": "https://hooks.slack.com/x"},
     ["receivers[0].slack: expected a mapping, or a list of mappings"]),
    ({"name": "a", "pagerduty": {"routing_key": ""}},
     ["receivers[0].pagerduty.routing_key: must not be empty"]),
    ({"name": "a", "pagerduty": {"routing_key": ROUTING_KEY, "url": "events.pagerduty.com"}},
     ["receivers[0].pagerduty.url: expected an http:// or https:// URL with a host"]),
    ({"name": "a", "webhook": {"url": "https://x.example", "max_alerts": -1}},
     ["receivers[0].webhook.max_alerts: Input should be greater than or equal to 0"]),
    ({"name": "a", "webhook": {"url": "https://x.example", "timeout": "soon"}},
     ["receivers[0].webhook.timeout: expected a duration such as 30s, 15m, 1h30m or 2d, got 'soon'"]),
    ({"name": "a", "webhook": {"url": "https://x.example", "http_config": {
        "bearer_token": "t", "basic_auth": {"username": "u", "password": "p"}}}},
     ["receivers[0].webhook.http_config: bearer_token and basic_auth are exclusive"]),
    ({"name": "a", "email": {"to": [], "smtp": SMTP}},
     ["receivers[0].email.to: Tuple should have at least 1 item after validation, not 0"]),
    ({"name": "a", "email": {"to": ["x@example.com"], "smtp": {**SMTP, "ssl": True, "starttls": True}}},
     ["receivers[0].email.smtp: starttls and ssl are exclusive: ssl is TLS from the start"]),
    ({"name": "a", "email": {"to": ["x@example.com"], "smtp": {**SMTP, "password": "p"}}},
     ["receivers[0].email.smtp: password without username"]),
    ({"name": "a", "email": {"to": ["x@example.com"], "smtp": {**SMTP, "prot": 25}}},
     ["receivers[0].email.smtp.prot: unknown key"]),
    ({"slack": {"webhook_url": SLACK_URL}}, ["receivers[0].name: Field required"]),
])
def test_errors_name_the_key(item, expected):
    assert errors([item]) == expected


def test_all_problems_at_once_and_duplicate_names():
    assert errors([{"name": "a"}, {"name": "b", "x": 1}, {"name": "a"}]) == [
        "receivers[1].x: unknown key (integrations: email, log, pagerduty, slack, webhook)",
        "receivers[2].name: duplicate receiver name 'a'"]


def test_defaults_follow_alertmanager():
    r = build_receivers([{
        "name": "all",
        "pagerduty": {"routing_key": ROUTING_KEY},
        "slack": {"webhook_url": SLACK_URL},
        "webhook": {"url": "https://x.example/h"},
        "email": {"to": ["x@example.com"], "smtp": SMTP},
    }])["all"]
    assert {ch.kind: ch.send_resolved for ch in r.channels} == {
        "pagerduty": True, "slack": False, "webhook": True, "email": False}
    pd, _, wh, mail = (ch.config for ch in r.channels)
    assert pd.url == "https://events.pagerduty.com/v2/enqueue" and pd.timeout == 10.0
    assert wh.max_alerts == 0
    assert (mail.from_, mail.smtp.use_starttls, mail.smtp.effective_port) == ("pipemon@localhost", True, 587)


@pytest.mark.parametrize("smtp, port", [
    ({"ssl": True}, 465), ({"starttls": False}, 25), ({"port": 2525}, 2525)])
def test_smtp_ports(smtp, port):
    r = build_receivers([{"name": "m", "email": {"to": ["x@example.com"], "smtp": {**SMTP, **smtp}}}])["m"]
    assert r.channels[0].config.smtp.effective_port == port


def test_receiver_config_is_a_model_config_py_can_embed():
    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        receivers: tuple[ReceiverConfig, ...] = ()  # type: ignore[valid-type]

    s = Settings.model_validate({"receivers": [{"name": "p", "slack": [{"webhook_url": SLACK_URL}]}]})
    assert [(k, i) for k, i, _ in s.receivers[0].integrations()] == [("slack", 0)]
    assert list(build_receivers(s.receivers)) == ["p"]


def test_models_dumping_to_the_receiver_shape_are_accepted():
    class Loose(BaseModel):  # like a placeholder that keeps integrations as extra keys
        model_config = ConfigDict(extra="allow")
        name: str

    r = build_receivers([Loose(name="p", pagerduty={"routing_key": ROUTING_KEY})])
    assert [ch.name for ch in r["p"].channels] == ["p/pagerduty[0]"]


def test_registry_decides_the_keys():
    assert list(REGISTRY) == ["pagerduty", "slack", "webhook", "email", "log"]
    only_pd = make_registry(PagerDutyChannel)
    with pytest.raises(ConfigError) as e:
        build_receivers([{"name": "a", "slack": {"webhook_url": SLACK_URL}}], registry=only_pd)
    assert str(e.value.problems[0]) == "receivers[0].slack: unknown key (integrations: pagerduty)"
    with pytest.raises(ValueError, match="taken"):
        make_registry(PagerDutyChannel, PagerDutyChannel)
