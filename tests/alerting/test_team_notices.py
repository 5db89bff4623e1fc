"""Across teams (issue 11, items 5 and 6), end to end with the real writer and deliverer and real HTTP to a
local webhook receiver: the upstream_failure notice a downstream team gets names the upstream pipeline,
its owner and its state, never its error text; a config reload leaves nothing pending behind."""
from __future__ import annotations

import json

import pytest

from pipemon.config import loads
from tests.alerting.harness import Harness, at

ERROR = "ERROR: permission denied for table payroll_salaries (host db-payments-7)"


def config(url: str, pay_receiver: str = "payments") -> str:
    return f"""
pipelines:
  - {{match: "pay/*", team: payments, schedule: "0 * * * *", grace: 10m}}
  - {{match: "mkt/d1", team: marketing, schedule: "0 * * * *", grace: 15m, depends_on: ["pay/ledger"]}}
receivers:
  - {{name: default, webhook: {{url: "{url}/default"}}}}
  - {{name: {pay_receiver}, webhook: {{url: "{url}/{pay_receiver}"}}}}
  - {{name: marketing, webhook: {{url: "{url}/mkt"}}}}
route:
  receiver: default
  group_by: [team, pipeline]
  group_wait: 0s
  routes:
    - {{matchers: ['team="payments"'], receiver: {pay_receiver}}}
    - {{matchers: ['team="marketing"'], receiver: marketing}}
"""


@pytest.fixture
def hs(db_url, receiver):
    h = Harness(db_url, config(receiver.url), at(0, 0))
    yield h
    h.close()


def test_the_upstream_failure_notice_names_pipeline_owner_and_state_never_the_error(hs, receiver):
    hs.run("pay/ledger", "l0", at(0, 0), at(0, 3))
    hs.run("mkt/d1", "d0", at(0, 4), at(0, 6))
    hs.run("pay/ledger", "l1", at(1, 0), at(1, 2), ok=False, error=ERROR)
    hs.advance(at(1, 5))
    hs.settle()
    [own] = receiver.on("/payments")           # the owner's page carries its own error
    assert ERROR in json.dumps(own["body"])
    [notice] = receiver.on("/mkt")
    text = json.dumps(notice["body"])
    assert ERROR not in text and "payroll" not in text and "permission denied" not in text
    [a] = notice["body"]["alerts"]
    assert a["labels"]["kind"] == "upstream_failure" and a["labels"]["root_team"] == "payments"
    assert a["annotations"]["summary"] == "upstream pay/ledger (team payments) is failing: " \
                                          "1 of your pipelines depend on it"
    assert a["annotations"]["description"].startswith(
        "pay/ledger, owned by team payments, is failing (since ")
    assert "Your pipelines downstream of it: mkt/d1." in a["annotations"]["description"]
    # the API's view of the notice for marketing is as quiet
    notices = [x for x in hs.alerts(kind="upstream_failure")]
    assert notices and all(ERROR not in json.dumps(x) for x in notices)


def test_a_reload_keeps_what_is_pending_and_new_alerts_take_the_new_routes(hs, receiver):
    hs.run("pay/ledger", "l1", at(1, 0), at(1, 2), ok=False)
    hs.advance(at(1, 3))
    hs.settle()
    assert receiver.actions("/payments") == ["trigger"]
    # payments moves to a new receiver; the old one is gone from the config
    hs.pm.reconfigure(loads(config(receiver.url, pay_receiver="payments2")))
    hs.run("pay/invoices", "i1", at(1, 4), at(1, 5), ok=False)
    hs.advance(at(1, 6))
    hs.run("pay/ledger", "l2", at(1, 7), at(1, 8))   # the ledger recovers
    hs.advance(at(1, 20))
    hs.settle()
    # the receiver paged for the ledger still gets its resolve; the new failure pages the new receiver
    assert receiver.actions("/payments") == ["trigger", "resolve"]
    assert [(r["body"]["alerts"][0]["labels"]["pipeline"], r["body"]["pipemon"]["action"])
            for r in receiver.on("/payments2")] == [("pay/invoices", "trigger")]
    log = hs.client.get("/api/v1/notifications", params={"limit": 100}).json()["items"]
    assert {n["status"] for n in log} == {"sent"}   # none pending, none dead
    assert sorted((n["receiver"], n["action"]) for n in log) == [   # marketing: the ledger's notice
        ("marketing", "resolve"), ("marketing", "trigger"), ("payments", "resolve"), ("payments", "trigger"),
        ("payments2", "trigger")]
