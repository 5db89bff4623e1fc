from __future__ import annotations

import base64
import json

import httpx
import pytest

from pipemon.model import NotifyAction
from pipemon.notify import TransportError, WebhookChannel, WebhookConfig
from tests.notify.conftest import (
    BEARER,
    DASHBOARD,
    HOOK_URL,
    LATE,
    PASSWORD,
    T0,
    alert,
    notification,
    with_resolved_late,
)

A = NotifyAction
CHANNEL = WebhookChannel(WebhookConfig(url=HOOK_URL))

INVOICES_LABELS = {
    "team": "payments", "namespace": "payments-airflow", "pipeline": "payments-airflow/invoices",
    "kind": "failure", "severity": "critical", "tier": "1"}
INVOICES_ANNOTATIONS = {
    "summary": 'payments-airflow/invoices failed: relation "invoices_stg" does not exist',
    "description": "The last 3 runs failed with the same error.",
    "run_id": "run-42",
    "error": 'psycopg.errors.UndefinedTable: relation "invoices_stg" does not exist',
    "failed_task": "load_invoices",
}


def expected(action: NotifyAction, status: str, ends_at: str) -> dict:
    return {
        "version": "4",
        "groupKey": '{}:{team="payments"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "payments",
        "groupLabels": {"team": "payments"},
        "commonLabels": {"alertname": "failure", **INVOICES_LABELS},
        "commonAnnotations": INVOICES_ANNOTATIONS,
        "externalURL": "https://pipemon.example.com",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "failure", **INVOICES_LABELS},
            "annotations": INVOICES_ANNOTATIONS,
            "startsAt": "2026-09-21T14:13:20Z",
            "endsAt": ends_at,
            "generatorURL": DASHBOARD,
            "fingerprint": "fp-invoices-failure",
        }],
        "pipemon": {"action": action.value, "notification_key": f"n7-{action.value}", "notification_id": 7},
    }


@pytest.mark.parametrize("action, status, ends_at", [
    (A.TRIGGER, "firing", "0001-01-01T00:00:00Z"),
    (A.REPEAT, "firing", "0001-01-01T00:00:00Z"),
    (A.ESCALATE, "firing", "0001-01-01T00:00:00Z"),
    (A.ACKNOWLEDGE, "firing", "0001-01-01T00:00:00Z"),  # v4 knows no "acknowledged": pipemon.action says it
    (A.RESOLVE, "resolved", "2026-09-21T14:18:20Z"),
    (A.TEST, "firing", "0001-01-01T00:00:00Z"),
])
def test_v4_body_per_action(action, status, ends_at):
    [req] = CHANNEL.build(notification(action))
    assert (req.method, req.url) == ("POST", HOOK_URL)
    assert dict(req.headers) == {"Idempotency-Key": f"n7-{action.value}"}
    assert req.json == expected(action, status, ends_at)


def test_common_labels_span_all_alerts_and_max_alerts_truncates():
    n = notification(alerts=(alert(), alert(**LATE), alert(**{**LATE, "fingerprint": "fp3"})))
    body = WebhookChannel(WebhookConfig(url=HOOK_URL, max_alerts=2)).build(n)[0].json
    assert body["truncatedAlerts"] == 1 and len(body["alerts"]) == 2
    assert body["commonLabels"] == {"team": "payments", "tier": "1"}
    assert body["commonAnnotations"] == {}


def test_mixed_group_is_firing_until_all_resolved():
    body = CHANNEL.build(with_resolved_late(notification(), T0 + 115))[0].json
    assert body["status"] == "firing"
    assert [(a["status"], a["endsAt"]) for a in body["alerts"]] == [
        ("firing", "0001-01-01T00:00:00Z"), ("resolved", "2026-09-21T14:15:15Z")]


def test_auth_headers():
    bearer = WebhookChannel(WebhookConfig(url=HOOK_URL, http_config={"bearer_token": BEARER}))
    assert bearer.build(notification())[0].headers["Authorization"] == f"Bearer {BEARER}"
    basic = WebhookChannel(WebhookConfig(url=HOOK_URL, http_config={"basic_auth": {"username": "pm",
                                                                                   "password": PASSWORD}}))
    token = base64.b64encode(f"pm:{PASSWORD}".encode()).decode()
    assert basic.build(notification())[0].headers["Authorization"] == f"Basic {token}"
    assert token in basic.config.secrets()  # so the encoded form is scrubbed too


def test_real_local_receiver_gets_v4_body_and_headers(http_receiver):
    ch = WebhookChannel(WebhookConfig(url=f"{http_receiver.url}/hooks/pipemon?token=abc",
                                      http_config={"bearer_token": BEARER}))
    with httpx.Client() as http:
        ch.send(notification(A.ESCALATE), http)
    [got] = http_receiver.requests
    assert (got.method, got.path) == ("POST", "/hooks/pipemon?token=abc")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["idempotency-key"] == "n7-escalate"
    assert got.headers["authorization"] == f"Bearer {BEARER}"
    assert got.json() == expected(A.ESCALATE, "firing", "0001-01-01T00:00:00Z")
    assert json.loads(got.body)["version"] == "4"


def test_real_local_receiver_503_with_retry_after_is_transient(http_receiver):
    http_receiver.replies.append((503, {"Retry-After": "12"}, b"busy"))
    ch = WebhookChannel(WebhookConfig(url=http_receiver.url + "/x", timeout="2s"))
    with httpx.Client() as http, pytest.raises(TransportError) as e:
        ch.send(notification(), http)
    assert (e.value.permanent, e.value.retry_after, e.value.status) == (False, 12.0, 503)
    assert "HTTP 503 Service Unavailable: busy" in e.value.message
