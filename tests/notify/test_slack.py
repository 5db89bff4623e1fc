from __future__ import annotations

import pytest

from pipemon.model import NotifyAction, Severity
from pipemon.notify import SlackChannel, SlackConfig
from tests.notify.conftest import DASHBOARD, LATE, SLACK_URL, alert, notification

A = NotifyAction
CHANNEL = SlackChannel(SlackConfig(webhook_url=SLACK_URL))
SUMMARY = 'payments-airflow/invoices failed: relation "invoices_stg" does not exist'
ERROR = 'psycopg.errors.UndefinedTable: relation "invoices_stg" does not exist'


def invoices_blocks() -> list[dict]:
    return [
        {"type": "section",
         "text": {"type": "mrkdwn", "text": f"*{SUMMARY}*\nThe last 3 runs failed with the same error."},
         "fields": [{"type": "mrkdwn", "text": "*Pipeline*\n`payments-airflow/invoices`"},
                    {"type": "mrkdwn", "text": "*Team*\npayments"},
                    {"type": "mrkdwn", "text": "*Kind*\nfailure"},
                    {"type": "mrkdwn", "text": "*Severity*\ncritical"},
                    {"type": "mrkdwn", "text": "*Run*\n`run-42`"},
                    {"type": "mrkdwn", "text": "*Failed task*\n`load_invoices`"}],
         "accessory": {"type": "button", "text": {"type": "plain_text", "text": "Open in pipemon"},
                       "url": DASHBOARD}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{ERROR}```"}},
    ]


@pytest.mark.parametrize("action, head", [
    (A.TRIGGER, "🔴 FIRING"),
    (A.REPEAT, "🔴 STILL FIRING"),
    (A.ESCALATE, "🔴 ESCALATED"),
    (A.ACKNOWLEDGE, "👀 ACKNOWLEDGED"),
    (A.RESOLVE, "✅ RESOLVED"),
    (A.TEST, "🧪 TEST"),
])
def test_message_per_action(action, head):
    [req] = CHANNEL.build(notification(action))
    assert (req.method, req.url, dict(req.headers)) == ("POST", SLACK_URL, {})
    assert req.json == {
        "text": f"{head}: {SUMMARY}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"{head}: {SUMMARY}", "emoji": True}},
            *invoices_blocks()],
    }


def test_two_alerts_are_titled_by_group_and_kind_and_divided():
    [req] = CHANNEL.build(notification(alerts=(alert(), alert(**LATE))))
    blocks = req.json["blocks"]
    assert blocks[0]["text"]["text"] == "🔴 FIRING: payments: pipeline failures, late pipelines"
    assert [b["type"] for b in blocks] == ["header", "section", "section", "divider", "section"]
    late = blocks[4]
    assert "accessory" not in late and late["text"]["text"] == (
        "*payments-dbt/ledger is late: expected by 14:00*\nNo run started since 13:00.")
    assert [f["text"] for f in late["fields"]] == [
        "*Pipeline*\n`payments-dbt/ledger`", "*Team*\npayments", "*Kind*\nlate", "*Severity*\nwarning"]


def test_severity_emoji_is_the_worst_alert():
    n = notification(alerts=(alert(**LATE), alert(severity=Severity.ERROR)))
    assert CHANNEL.build(n)[0].json["text"].startswith("🟠 FIRING")


def test_at_most_ten_alerts_then_and_n_more():
    alerts = tuple(alert(fingerprint=f"fp{i}", summary=f"pipeline {i} failed") for i in range(13))
    blocks = CHANNEL.build(notification(alerts=alerts))[0].json["blocks"]
    assert sum(1 for b in blocks if b["type"] == "section" and "fields" in b) == 10
    assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "…and 3 more"}]}
    assert len(blocks) <= 50
    assert blocks[0]["text"]["text"] == "🔴 FIRING: payments: pipeline failures"


def test_long_texts_are_cut_and_mrkdwn_is_escaped():
    a = alert(summary="s" * 400, error="E<x>&" + "e" * 1000 + "```", description="<!channel> & friends")
    blocks = CHANNEL.build(notification(alerts=(a,)))[0].json["blocks"]
    assert len(blocks[0]["text"]["text"]) == 150
    assert blocks[1]["text"]["text"].startswith("*" + "s" * 299 + "…*\n&lt;!channel&gt; &amp; friends")
    code = blocks[2]["text"]["text"]
    assert code.startswith("```E&lt;x&gt;&amp;eee") and code.endswith("…```")
    shown = code.removeprefix("```").removesuffix("```")
    as_slack_shows_it = shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert len(as_slack_shows_it) == 500


def test_send_resolved_defaults_to_false():
    assert CHANNEL.send_resolved is False
    assert CHANNEL.select(notification(A.RESOLVE)) is None
