"""Receivers: which channels get a notification, and how their failures add up."""
from __future__ import annotations

import json

import httpx
import msgspec
import pytest

from pipemon.model import NotifyAction
from pipemon.notify import DeliveryError, Receiver, TransportError, build_receivers
from tests.notify.conftest import ROUTING_KEY, SLACK_URL, T0, notification, with_resolved_late

A = NotifyAction
HOOK = "https://hooks.example.com/audit"
CONFIG = [{
    "name": "payments",
    "pagerduty": {"routing_key": ROUTING_KEY},
    "slack": [{"webhook_url": SLACK_URL}, {"webhook_url": SLACK_URL + "2", "send_resolved": True}],
    "webhook": {"url": HOOK, "send_resolved": False},
}]


def receiver() -> Receiver:
    return build_receivers(CONFIG)["payments"]


def names(r: Receiver, n) -> list[str]:
    return [ch.name for ch, _ in r.targets(n)]


def test_channels_are_named_by_receiver_kind_and_index():
    assert [ch.name for ch in receiver().channels] == [
        "payments/pagerduty[0]", "payments/slack[0]", "payments/slack[1]", "payments/webhook[0]"]


@pytest.mark.parametrize("action, expected", [
    (A.TRIGGER, ["pagerduty[0]", "slack[0]", "slack[1]", "webhook[0]"]),
    (A.ACKNOWLEDGE, ["pagerduty[0]", "slack[0]", "slack[1]", "webhook[0]"]),
    (A.TEST, ["pagerduty[0]", "slack[0]", "slack[1]", "webhook[0]"]),
    (A.RESOLVE, ["pagerduty[0]", "slack[1]"]),  # only channels with send_resolved
])
def test_targets(action, expected):
    assert names(receiver(), notification(action)) == [f"payments/{e}" for e in expected]


def test_without_send_resolved_a_channel_gets_only_the_firing_alerts_of_a_mixed_group():
    n = with_resolved_late(notification(A.TRIGGER), T0 + 100)
    got = {ch.name: sub for ch, sub in receiver().targets(n)}
    assert [a.fingerprint for a in got["payments/slack[0]"].alerts] == ["fp-invoices-failure"]
    assert [a.fingerprint for a in got["payments/slack[1]"].alerts] == [
        "fp-invoices-failure", "fp-ledger-late"]
    only_resolved = msgspec.structs.replace(n, alerts=n.alerts[1:])
    assert names(receiver(), only_resolved) == ["payments/pagerduty[0]", "payments/slack[1]"]


def transport(status_by_host_path: dict[str, int], calls: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        key = request.url.host + ("/2" if request.url.path.endswith("2") else "")
        calls.append(key)
        status = status_by_host_path.get(key, 200)
        return httpx.Response(status, headers={"Retry-After": "9"} if status == 429 else {})
    return httpx.MockTransport(handler)


def send(statuses: dict[str, int], n=None, skip=()) -> tuple[tuple[str, ...] | DeliveryError, list[str]]:
    calls: list[str] = []
    with httpx.Client(transport=transport(statuses, calls)) as http:
        try:
            return receiver().send(n or notification(), http, skip=skip), calls
        except DeliveryError as e:
            return e, calls


def test_all_delivered():
    got, calls = send({})
    assert got == ("payments/pagerduty[0]", "payments/slack[0]", "payments/slack[1]", "payments/webhook[0]")
    assert calls == ["events.pagerduty.com", "hooks.slack.com", "hooks.slack.com/2", "hooks.example.com"]


def test_one_transient_failure_is_retried_without_resending_the_others():
    err, _ = send({"hooks.slack.com": 500, "hooks.example.com": 429})
    assert isinstance(err, DeliveryError) and isinstance(err, TransportError)
    assert (err.permanent, err.retry_after) == (False, 9.0)
    assert err.delivered == ("payments/pagerduty[0]", "payments/slack[1]")
    assert set(err.failures) == {"payments/slack[0]", "payments/webhook[0]"}
    assert err.message.startswith("payments: 2 of 4 channel(s) failed: payments/slack[0]: POST")
    got, calls = send({}, skip=err.settled)
    assert got == ("payments/slack[0]", "payments/webhook[0]")
    assert calls == ["hooks.slack.com", "hooks.example.com"]


def test_permanent_only_when_no_failure_is_worth_retrying():
    err, _ = send({"hooks.slack.com": 404, "events.pagerduty.com": 400})
    assert err.permanent and err.delivered == ("payments/slack[1]", "payments/webhook[0]")
    err, _ = send({"hooks.slack.com": 404, "events.pagerduty.com": 503})
    assert not err.permanent
    assert err.settled == {"payments/slack[1]", "payments/webhook[0]", "payments/slack[0]"}


def test_a_bug_in_one_channel_does_not_stop_the_others(monkeypatch, caplog):
    from pipemon.notify import slack
    monkeypatch.setattr(slack, "message", lambda n: 1 / 0)
    err, calls = send({})
    assert set(err.failures) == {"payments/slack[0]", "payments/slack[1]"}
    assert not err.permanent and "internal error: ZeroDivisionError" in err.message
    assert calls == ["events.pagerduty.com", "hooks.example.com"]
    assert "ZeroDivisionError" in caplog.text


def test_a_notification_for_another_receiver_is_refused():
    with pytest.raises(ValueError, match="is for 'ops'"):
        receiver().send(notification(receiver="ops"), httpx.Client())


def test_receiver_without_integrations_drops_everything():
    r = build_receivers([{"name": "blackhole"}])["blackhole"]
    assert r.channels == () and r.send(notification(receiver="blackhole"), httpx.Client()) == ()


def test_webhook_body_arrives_whole_through_a_receiver():
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.read()))
        return httpx.Response(200)
    r = build_receivers([{"name": "payments", "webhook": {"url": HOOK}}])["payments"]
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        r.send(notification(A.RESOLVE), http)
    assert bodies[0]["status"] == "resolved" and bodies[0]["pipemon"]["action"] == "resolve"
