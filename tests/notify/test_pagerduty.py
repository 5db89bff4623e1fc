from __future__ import annotations

import hashlib

import pytest

from pipemon.model import NotifyAction
from pipemon.notify import PagerDutyChannel, PagerDutyConfig
from tests.notify.conftest import DASHBOARD, LATE, ROUTING_KEY, T0, alert, notification, with_resolved_late

A = NotifyAction
CHANNEL = PagerDutyChannel(PagerDutyConfig(routing_key=ROUTING_KEY))

TRIGGER_EVENT = {
    "routing_key": ROUTING_KEY,
    "event_action": "trigger",
    "dedup_key": "fp-invoices-failure",
    "payload": {
        "summary": 'payments-airflow/invoices failed: relation "invoices_stg" does not exist',
        "source": "payments-airflow/invoices",
        "severity": "critical",
        "timestamp": "2026-09-21T14:14:20Z",
        "component": "invoices",
        "group": "payments",
        "class": "failure",
        "custom_details": {
            "description": "The last 3 runs failed with the same error.",
            "run_id": "run-42",
            "error": 'psycopg.errors.UndefinedTable: relation "invoices_stg" does not exist',
            "failed_task": "load_invoices",
            "labels": {"team": "payments", "namespace": "payments-airflow",
                       "pipeline": "payments-airflow/invoices", "kind": "failure", "severity": "critical",
                       "tier": "1"},
            "occurrences": 3,
        },
    },
    "links": [{"href": DASHBOARD, "text": "payments-airflow/invoices in pipemon"}],
    "client": "pipemon",
    "client_url": "https://pipemon.example.com",
}
SHORT = {"routing_key": ROUTING_KEY, "dedup_key": "fp-invoices-failure"}


@pytest.mark.parametrize("action, expected", [
    (A.TRIGGER, TRIGGER_EVENT),
    (A.REPEAT, TRIGGER_EVENT),
    (A.ESCALATE, TRIGGER_EVENT),
    (A.TEST, TRIGGER_EVENT),
    (A.ACKNOWLEDGE, {**SHORT, "event_action": "acknowledge"}),  # PagerDuty reads payload on triggers only
    (A.RESOLVE, {**SHORT, "event_action": "resolve"}),
])
def test_one_event_per_action(action, expected):
    [req] = CHANNEL.build(notification(action))
    assert (req.method, req.url) == ("POST", "https://events.pagerduty.com/v2/enqueue")
    assert req.json == expected


def test_one_event_per_alert_and_a_resolved_alert_is_resolved_not_retriggered():
    reqs = CHANNEL.build(with_resolved_late(notification(A.TRIGGER), T0 + 100))
    assert [(r.json["dedup_key"], r.json["event_action"]) for r in reqs] == [
        ("fp-invoices-failure", "trigger"), ("fp-ledger-late", "resolve")]


def test_optional_parts_are_left_out():
    n = notification(alerts=(alert(**LATE),), external_url=None)
    [req] = CHANNEL.build(n)
    assert "links" not in req.json and "client_url" not in req.json
    assert req.json["payload"]["custom_details"] == {
        "description": "No run started since 13:00.",
        "labels": LATE["labels"], "occurrences": 1}
    assert req.json["payload"]["severity"] == "warning"


def test_root_cause_is_in_the_details():
    [req] = CHANNEL.build(notification(alerts=(alert(kind="upstream_failure", root_cause="ingest/orders",
                                                     root_cause_team="platform"),)))
    details = req.json["payload"]["custom_details"]
    assert (details["root_cause"], details["root_cause_team"]) == ("ingest/orders", "platform")


def test_limits():
    [req] = CHANNEL.build(notification(alerts=(alert(summary="x" * 5000, fingerprint="f" * 300),)))
    assert len(req.json["payload"]["summary"]) == 1024 and req.json["payload"]["summary"].endswith("…")
    assert req.json["dedup_key"] == hashlib.sha256(b"f" * 300).hexdigest()


def test_url_is_overridable():
    ch = PagerDutyChannel(PagerDutyConfig(routing_key=ROUTING_KEY, url="https://pd.internal.example/v2/enqueue"))
    assert ch.build(notification())[0].url == "https://pd.internal.example/v2/enqueue"
    assert ch.send_resolved is True
