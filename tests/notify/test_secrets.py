"""No secret (routing key, webhook token path, password, bearer token) in reprs, dumps, errors or logs."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from pipemon.errors import ConfigError
from pipemon.notify import (
    DeliveryError,
    ReceiverConfig,
    RedactUrls,
    build_receivers,
    redact,
    redact_httpx_logs,
    redact_url,
)
from tests.notify.conftest import (
    BEARER,
    HOOK_TOKEN,
    HOOK_URL,
    PASSWORD,
    ROUTING_KEY,
    SLACK_TOKEN,
    SLACK_URL,
    assert_no_secret,
    notification,
)

CONFIG = [{
    "name": "payments",
    "pagerduty": {"routing_key": ROUTING_KEY},
    "slack": {"webhook_url": SLACK_URL, "send_resolved": True},
    "webhook": [{"url": HOOK_URL, "http_config": {"bearer_token": BEARER}},
                {"url": f"https://pm:{PASSWORD}@basic.example.com/in",
                 "http_config": {"basic_auth": {"username": "pm", "password": PASSWORD}}}],
    "email": {"to": ["oncall@example.com"], "smtp": {"host": "smtp.example.com", "username": "pm",
                                                     "password": PASSWORD}},
}]


@pytest.fixture
def httpx_redacted() -> Iterator[None]:
    """What the composition root does at startup; undone after the test."""
    logger = logging.getLogger("httpx")
    before = list(logger.filters)
    redact_httpx_logs()
    redact_httpx_logs()  # idempotent
    assert sum(isinstance(f, RedactUrls) for f in logger.filters) == 1
    yield
    logger.filters[:] = before


def test_config_reprs_and_dumps_are_masked():
    cfg = ReceiverConfig.model_validate(CONFIG[0])
    shown = [repr(cfg), str(cfg), str(cfg.model_dump()), cfg.model_dump_json(),
             str(cfg.model_dump(mode="json"))]
    receivers = build_receivers(CONFIG)
    shown += [repr(receivers), str(receivers)]
    for ch in receivers["payments"].channels:
        shown += [repr(ch), repr(ch.config), str(ch.config), ch.config.model_dump_json()]
    for s in shown:
        assert_no_secret(s)
    assert "https://hooks.slack.com/<redacted>" in cfg.model_dump_json()
    # The credentials in a URL go too.
    assert "https://basic.example.com/<redacted>" in cfg.model_dump_json()


def test_requests_repr_is_masked():
    for ch in build_receivers(CONFIG)["payments"].channels:
        for req in ch.build(notification()):
            assert_no_secret(repr(req))


def test_invalid_input_is_not_echoed():
    bad = {"name": "a", "webhook": {"url": f"ftp://{HOOK_TOKEN}.example", "bearer_token": BEARER},
           "pagerduty": {"routing_key": 42, "secret": ROUTING_KEY}}
    with pytest.raises(ValidationError) as e:
        ReceiverConfig.model_validate(bad)
    assert_no_secret(str(e.value))
    with pytest.raises(ConfigError) as ce:
        build_receivers([bad])
    assert_no_secret(str(ce.value))


def test_errors_and_logs_of_failed_and_good_deliveries(caplog, httpx_redacted):
    caplog.set_level(logging.DEBUG)
    http_only = {k: v for k, v in CONFIG[0].items() if k != "email"}  # email: see test_email.py
    receiver = build_receivers([http_only])["payments"]
    for status in (200, 400, 429, 500):
        echo = f"{ROUTING_KEY} {SLACK_URL} {HOOK_URL} {BEARER} {PASSWORD}"
        transport = httpx.MockTransport(lambda r, s=status, t=echo: httpx.Response(s, text=t))
        with httpx.Client(transport=transport) as http:
            try:
                receiver.send(notification(), http)
            except DeliveryError as e:
                assert_no_secret(str(e) + repr(e) + "".join(map(repr, e.failures.values())))
    assert "HTTP Request: POST https://hooks.slack.com/<redacted>" in caplog.text  # httpx's own log, masked
    assert "delivered via payments/slack[0]" in caplog.text
    assert_no_secret(caplog.text)


def test_logs_of_a_real_round_trip(caplog, httpx_redacted, http_receiver):
    caplog.set_level(logging.DEBUG)  # httpcore logs its connection steps at DEBUG
    webhook = {"url": f"{http_receiver.url}/in/{HOOK_TOKEN}", "http_config": {"bearer_token": BEARER}}
    r = build_receivers([{"name": "payments", "webhook": webhook}])["payments"]
    with httpx.Client() as http:
        r.send(notification(), http)
    assert http_receiver.requests[0].headers["authorization"] == f"Bearer {BEARER}"
    assert any(rec.name.startswith("httpcore") for rec in caplog.records)
    assert_no_secret(caplog.text)


def test_httpx_logs_full_urls_unless_filtered(caplog):
    """Why the composition root must call redact_httpx_logs(): httpx logs each request URL at INFO.
    (Other tests build a pipemon, which installs the filter process-wide: take it off for this one.)"""
    logger = logging.getLogger("httpx")
    saved = list(logger.filters)
    for f in saved:
        logger.removeFilter(f)
    try:
        caplog.set_level(logging.INFO, logger="httpx")
        with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as http:
            http.post(SLACK_URL)
        assert SLACK_TOKEN in caplog.text
    finally:
        for f in saved:
            logger.addFilter(f)


def test_redact_helpers():
    text = f"key={ROUTING_KEY}&u={httpx.URL(HOOK_URL)}"
    assert redact(text, [ROUTING_KEY, HOOK_URL]) == "key=<redacted>&u=<redacted>"
    assert redact("x%2Fy and x/y", ["x/y"]) == "<redacted> and <redacted>"  # the URL-encoded form too
    assert redact_url("https://u:p@h.example:8443/a/b?token=t#f") == "https://h.example:8443/<redacted>"
    assert redact_url("https://events.pagerduty.com") == "https://events.pagerduty.com"
    assert redact_url("http://[::1]:9/x") == "http://[::1]:9/<redacted>"
    assert redact_url("http://h:notaport/x") == "<redacted>"
