"""How each HTTP channel classifies what the far end answered: httpx.MockTransport plays the far end."""
from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from pipemon.notify import (
    PagerDutyChannel,
    PagerDutyConfig,
    SlackChannel,
    SlackConfig,
    TransportError,
    WebhookChannel,
    WebhookConfig,
)
from pipemon.notify.base import HttpChannel
from tests.notify.conftest import (
    BEARER,
    HOOK_URL,
    ROUTING_KEY,
    SLACK_URL,
    assert_no_secret,
    free_port,
    notification,
)

CHANNELS: dict[str, Callable[[], HttpChannel]] = {
    "pagerduty": lambda: PagerDutyChannel(PagerDutyConfig(routing_key=ROUTING_KEY), name="r/pagerduty[0]"),
    "slack": lambda: SlackChannel(SlackConfig(webhook_url=SLACK_URL), name="r/slack[0]"),
    "webhook": lambda: WebhookChannel(WebhookConfig(url=HOOK_URL, http_config={"bearer_token": BEARER}),
                                      name="r/webhook[0]"),
}


def reply(status: int, body: str = "", headers: dict[str, str] | None = None) -> Callable:
    return lambda request: httpx.Response(status, text=body, headers=headers or {})


def fail(exc: type[httpx.HTTPError], msg: str) -> Callable:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc(msg, request=request)
    return handler


# (handler, permanent or None for success, retry_after, a fragment of the message)
CASES = {
    "200 ok": (reply(200, "ok"), None, None, ""),
    "202 accepted": (reply(202, '{"status":"success","message":"Event processed"}'), None, None, ""),
    "400 invalid": (reply(400, '{"status":"invalid event","errors":["Event object is invalid"]}'), True, None,
                    "HTTP 400 Bad Request"),
    "404 no_service": (reply(404, "no_service"), True, None, "HTTP 404 Not Found: no_service"),
    "410 archived": (reply(410, "channel_is_archived"), True, None, "HTTP 410 Gone: channel_is_archived"),
    "301 moved": (reply(301, "", {"Location": "https://elsewhere.example/"}), True, None, "HTTP 301"),
    "408 timeout": (reply(408), False, None, "HTTP 408"),
    "429 seconds": (reply(429, "rate_limited", {"Retry-After": "7"}), False, 7.0,
                    "HTTP 429 Too Many Requests"),
    "429 http-date": (reply(429, "", {"Retry-After": "Mon, 21 Sep 2026 14:16:00 GMT",
                                      "Date": "Mon, 21 Sep 2026 14:15:30 GMT"}), False, 30.0, "HTTP 429"),
    "429 bare": (reply(429), False, None, "HTTP 429"),
    "500": (reply(500, "rollup_error"), False, None, "HTTP 500 Internal Server Error: rollup_error"),
    "503": (reply(503, "", {"Retry-After": "120"}), False, 120.0, "HTTP 503"),
    "timeout": (fail(httpx.ReadTimeout, "The read operation timed out"), False, None, "timed out"),
    "connect timeout": (fail(httpx.ConnectTimeout, "timed out"), False, None, "timed out"),
    "refused": (fail(httpx.ConnectError, "[Errno 111] Connection refused"), False, None,
                "Connection refused"),
    "reset": (fail(httpx.RemoteProtocolError, "Server disconnected"), False, None, "Server disconnected"),
}


@pytest.mark.parametrize("kind", CHANNELS)
@pytest.mark.parametrize("case", CASES)
def test_classification(kind, case):
    handler, permanent, wait, fragment = CASES[case]
    ch = CHANNELS[kind]()
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        if permanent is None:
            ch.send(notification(), http)
            return
        with pytest.raises(TransportError) as e:
            ch.send(notification(), http)
    assert (e.value.permanent, e.value.retry_after) == (permanent, wait)
    assert fragment in e.value.message
    assert e.value.message.startswith(f"r/{kind}[0]: POST https://")
    assert_no_secret(str(e.value) + repr(e.value))
    # no chained httpx error whose traceback could show a URL
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)


def test_every_event_of_a_notification_is_sent_in_order():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read().decode())
        return httpx.Response(202)
    from tests.notify.conftest import LATE, alert
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        CHANNELS["pagerduty"]().send(notification(alerts=(alert(), alert(**LATE))), http)
    assert ["fp-invoices-failure" in seen[0], "fp-ledger-late" in seen[1]] == [True, True]


def test_the_timeout_is_passed_per_request():
    got = {}

    def handler(request: httpx.Request) -> httpx.Response:
        got.update(request.extensions["timeout"])
        return httpx.Response(200)
    ch = WebhookChannel(WebhookConfig(url=HOOK_URL, timeout="3s"))
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        ch.send(notification(), http)
    assert got == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}


def test_a_real_refused_connection_is_transient():
    ch = WebhookChannel(WebhookConfig(url=f"http://127.0.0.1:{free_port()}/hook/{'t' * 20}", timeout=2))
    with httpx.Client() as http, pytest.raises(TransportError) as e:
        ch.send(notification(), http)
    assert not e.value.permanent
    assert "ConnectError" in e.value.message and "t" * 20 not in e.value.message


def test_a_response_echoing_a_secret_is_scrubbed():
    echo = reply(400, f"bad routing key {ROUTING_KEY} for {SLACK_URL} and Bearer {BEARER}")
    for kind, make in CHANNELS.items():
        with httpx.Client(transport=httpx.MockTransport(echo)) as http, pytest.raises(TransportError) as e:
            make().send(notification(), http)
        assert "<redacted>" in e.value.message
        if kind == "pagerduty":
            assert ROUTING_KEY not in e.value.message
        if kind == "webhook":
            assert BEARER not in e.value.message
