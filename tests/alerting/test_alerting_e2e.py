"""Alerting end to end: fake clock, the real writer and deliverer threads, real HTTP to a local receiver
standing in for the team's webhook, PagerDuty and Slack."""
from __future__ import annotations

import pytest

from tests.alerting.harness import Harness, at


def config(url: str, extra_routes: str = "", policies: str = "", pipelines: str = "", inhibit: str = "") -> str:
    return f"""
pipelines:
  - match: "pay/*"
    team: payments
    tier: 2
    schedule: "0 * * * *"
    grace: 10m
{pipelines}
receivers:
  - name: default
    webhook: {{url: "{url}/default"}}
  - name: payments
    webhook: {{url: "{url}/pay"}}
  - name: payments-pd
    pagerduty: {{routing_key: "R0UTINGKEY0123456789abcdef012345", url: "{url}/pd"}}
  - name: lead
    webhook: {{url: "{url}/lead"}}
  - name: head
    webhook: {{url: "{url}/head"}}
  - name: analytics
    webhook: {{url: "{url}/ana"}}
  - name: finance
    webhook: {{url: "{url}/fin"}}
  - name: marketing
    webhook: {{url: "{url}/mkt"}}
route:
  receiver: default
  group_by: [team, pipeline]
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['team="payments"']
      receiver: payments
      {extra_routes}
    - matchers: ['team="analytics"']
      receiver: analytics
    - matchers: ['team="finance"']
      receiver: finance
    - matchers: ['team="marketing"']
      receiver: marketing
{policies}
{inhibit}
"""


@pytest.fixture
def h(db_url, receiver):
    hs = []

    def make(cfg: str, start: float = at(0, 0)) -> Harness:
        hh = Harness(db_url, cfg, start)
        hs.append(hh)
        return hh
    yield make
    for hh in hs:
        hh.close()


def test_a_failure_pages_its_team_once_however_often_it_repeats_and_recovery_resolves_once(h, receiver):
    hs = h(config(receiver.url))
    hs.run("pay/invoices", "r1", at(1, 0), at(1, 5), ok=False, error="relation invoices does not exist")
    for i in range(2, 6):  # the orchestrator keeps retrying; every attempt fails
        hs.run("pay/invoices", f"r{i}", at(1, 5 * i), at(1, 5 * i + 1), ok=False)
        hs.advance(at(1, 5 * i + 2))
    hs.settle()
    assert receiver.actions("/pay") == ["trigger"]
    body = receiver.on("/pay")[0]["body"]
    assert body["status"] == "firing" and body["alerts"][0]["labels"]["pipeline"] == "pay/invoices"
    assert "relation invoices does not exist" in body["alerts"][0]["annotations"]["error"]
    [alert] = hs.alerts(pipeline="pay/invoices")
    assert alert["occurrences"] == 5 and alert["state"] == "firing"
    hs.run("pay/invoices", "r6", at(1, 40), at(1, 42))
    hs.advance(at(1, 50))
    hs.settle()
    assert receiver.actions("/pay") == ["trigger", "resolve"]
    assert receiver.on("/pay")[1]["body"]["status"] == "resolved"
    assert hs.alerts(pipeline="pay/invoices")[0]["state"] == "resolved"
    assert receiver.on("/default") == []


def test_a_failure_its_retry_fixes_within_group_wait_pages_nobody(h, receiver):
    hs = h(config(receiver.url).replace("group_wait: 0s", "group_wait: 2m"))
    hs.run("pay/invoices", "a1", at(1, 0), at(1, 3), ok=False)
    hs.advance(at(1, 4))
    hs.run("pay/invoices", "a2", at(1, 4), at(1, 4, 30))  # the orchestrator's retry succeeds
    hs.advance(at(1, 20))
    hs.settle()
    assert receiver.requests == []
    [alert] = hs.alerts()
    assert alert["state"] == "resolved"  # recorded, never notified


def test_page_after_failures_waits_for_n_consecutive_failures(h, receiver):
    hs = h(config(receiver.url, extra_routes="page_after_failures: 3"))
    for i in range(2):
        hs.run("pay/flaky", f"f{i}", at(1, 10 * i), at(1, 10 * i + 1), ok=False)
        hs.advance(at(1, 10 * i + 2))
    hs.settle()
    assert receiver.on("/pay") == []
    hs.run("pay/flaky", "f2", at(1, 30), at(1, 31), ok=False)
    hs.advance(at(1, 32))
    hs.settle()
    assert receiver.actions("/pay") == ["trigger"]


def test_escalation_at_15m_and_45m_unless_acknowledged(h, receiver):
    policies = """
escalation_policies:
  - name: payments-escalation
    steps:
      - {after: 15m, receiver: lead}
      - {after: 45m, receiver: head}
"""
    hs = h(config(receiver.url, extra_routes="escalation: payments-escalation", policies=policies))
    hs.run("pay/invoices", "x1", at(1, 0), at(1, 1), ok=False)
    hs.run("pay/refunds", "y1", at(1, 0), at(1, 1), ok=False)
    hs.settle()
    refunds = next(a for a in hs.alerts() if a["pipeline"] == "pay/refunds")
    r = hs.client.post(f"/api/v1/alerts/{refunds['id']}/ack", json={"by": "alice"})  # `by` is ignored:
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert r.json()["acknowledged_by"] == "anonymous"  # the caller's token name (auth off: anonymous)
    hs.advance(at(1, 15, 59), step=30)
    hs.settle()
    assert receiver.on("/lead") == []
    hs.advance(at(1, 16, 1), step=30)
    hs.settle()
    [lead] = receiver.on("/lead")
    assert lead["body"]["pipemon"]["action"] == "escalate"
    assert [a["labels"]["pipeline"] for a in lead["body"]["alerts"]] == ["pay/invoices"]
    hs.advance(at(1, 46, 1), step=60)
    hs.settle()
    [head] = receiver.on("/head")
    assert [a["labels"]["pipeline"] for a in head["body"]["alerts"]] == ["pay/invoices"]
    assert len(receiver.on("/lead")) == 1  # no repeat configured: the policy ran once
    # the team was told of the ack, and the escalation receivers get the resolve when it clears
    assert "acknowledge" in receiver.actions("/pay")
    hs.run("pay/invoices", "x2", at(1, 50), at(1, 52))
    hs.advance(at(1, 58))
    hs.settle()
    assert receiver.actions("/lead") == ["escalate", "resolve"]
    assert receiver.actions("/head") == ["escalate", "resolve"]


def test_a_silence_suppresses_notification_but_not_the_record_and_the_resolve_still_goes_out(h, receiver):
    hs = h(config(receiver.url))
    hs.run("pay/a", "1", at(1, 0), at(1, 1), ok=False)
    hs.settle()
    assert receiver.actions("/pay") == ["trigger"]
    r = hs.client.post("/api/v1/silences", json={"matchers": ['team="payments"'], "duration": "2h",
                                                 "created_by": "bob", "comment": "migration"})
    assert r.status_code == 200 and r.json()["state"] == "active"
    hs.run("pay/b", "1", at(1, 5), at(1, 6), ok=False)  # a new failure while silenced
    hs.advance(at(1, 20))
    hs.settle()
    assert receiver.actions("/pay") == ["trigger"]          # nothing new notified …
    assert {a["pipeline"] for a in hs.alerts(state="firing")} == {"pay/a", "pay/b"}   # … but recorded
    # silenced is not healthy: the state stays failing, with the silence beside it
    p = hs.client.get("/api/v1/pipelines/pay%2Fb").json()
    assert p["state"] == "failing" and "silenced" not in p["reason"]
    assert "silenced by" in p["muted"]["reason"] and "migration" in p["muted"]["reason"]
    assert p["muted"]["until"] == hs.client.get("/api/v1/silences").json()["items"][0]["ends_at"]
    scrape = hs.client.get("/metrics").text
    series = 'pipemon_pipeline_state{pipeline="pay/b",team="payments",state="failing",muted="true"} 1.0'
    assert series in scrape
    failing = hs.client.get("/api/v1/pipelines", params={"state": "failing"}).json()["items"]
    listed = {x["id"]: x for x in failing}
    assert listed["pay/b"]["muted"] is not None
    # pay/a was paged before the silence: its recovery is still announced (Alertmanager #226)
    hs.run("pay/a", "2", at(1, 21), at(1, 22))
    hs.advance(at(1, 30))
    hs.settle()
    assert receiver.actions("/pay") == ["trigger", "resolve"]
    # silence expired: pay/b, still failing, pages now
    sid = r.json()["id"]
    assert hs.client.delete(f"/api/v1/silences/{sid}").json()["state"] == "expired"
    hs.advance(at(1, 40))
    hs.settle()
    assert receiver.actions("/pay") == ["trigger", "resolve", "trigger"]
    p = hs.client.get("/api/v1/pipelines/pay%2Fb").json()
    assert p["state"] == "failing" and p["muted"] is None


def test_inhibition(h, receiver):
    inhibit = """
inhibit_rules:
  - {source_matchers: ['kind="failure"'], target_matchers: ['kind="failure_rate"'], equal: [pipeline]}
"""
    hs = h(config(receiver.url, inhibit=inhibit))
    from pipemon.engine.mute import Muter
    assert isinstance(hs.pm.alerts.muter, Muter) and hs.pm.alerts.muter.inhibit
    from pipemon.engine.alerts import Alert
    from pipemon.model import Severity
    target = Alert("t", "pay/x", "payments", "failure_rate", {"pipeline": "pay/x", "kind": "failure_rate"},
                   Severity.WARNING, "s", "d", 0, 0)
    assert hs.pm.alerts.muter.inhibited_by("t", target.labels, [("s", {"pipeline": "pay/x", "kind": "failure"})]) == "s"
    assert hs.pm.alerts.muter.inhibited_by("t", target.labels, [("s", {"pipeline": "pay/y", "kind": "failure"})]) is None


UPSTREAM = """
  - match: "ana/*"
    team: analytics
    schedule: "0 * * * *"
    grace: 15m
  - match: "fin/*"
    team: finance
    schedule: "0 * * * *"
    grace: 15m
  - match: "mkt/*"
    team: marketing
    schedule: "0 * * * *"
    grace: 15m
"""
DOWNSTREAM = {  # 10 pipelines of 3 other teams, up to 3 hops from pay/ledger
    "ana/d1": "pay/ledger", "ana/d2": "pay/ledger", "ana/d3": "pay/ledger", "ana/d4": "ana/d1",
    "fin/d5": "ana/d1", "fin/d6": "ana/d2", "fin/d7": "fin/d5",
    "mkt/d8": "fin/d5", "mkt/d9": "fin/d7", "mkt/d10": "pay/ledger",
}


def test_an_upstream_failure_pages_its_team_once_and_tells_each_downstream_team_once(h, receiver):
    pipes = "".join(f'  - match: "{p}"\n    team: {dict(ana="analytics", fin="finance", mkt="marketing")[p[:3]]}\n'
                    f'    schedule: "0 * * * *"\n    grace: 15m\n    depends_on: ["{u}"]\n' for p, u in DOWNSTREAM.items())
    hs = h(config(receiver.url, pipelines=pipes + UPSTREAM))
    # hour 0: everything runs fine
    hs.run("pay/ledger", "l0", at(0, 0), at(0, 3))
    for i, p in enumerate(DOWNSTREAM):
        hs.run(p, f"{p}-0", at(0, 4), at(0, 5 + i % 3))
    hs.advance(at(0, 50))
    # hour 1: the ledger fails; nothing downstream runs, and every downstream pipeline goes late at 01:15
    hs.run("pay/ledger", "l1", at(1, 0), at(1, 2), ok=False, error="disk full")
    hs.advance(at(1, 40))
    hs.settle()
    assert receiver.actions("/pay") == ["trigger"]
    for team_path in ("/ana", "/fin", "/mkt"):
        got = receiver.on(team_path)
        assert len(got) == 1, (team_path, [r["body"]["alerts"] for r in got])
        [a] = got[0]["body"]["alerts"]
        assert a["labels"]["kind"] == "upstream_failure" and a["labels"]["severity"] == "info"
        assert "pay/ledger" in a["annotations"]["summary"] and "payments" in a["annotations"]["summary"]
    late = [a for a in hs.alerts(kind="late")]
    assert {a["pipeline"] for a in late} == set(DOWNSTREAM) and all(a["attached"] for a in late)
    assert all(a["root_cause"]["pipeline"] == "pay/ledger" for a in late)
    assert receiver.on("/default") == []
    # the ledger recovers: everything attached resolves, one resolve each
    hs.run("pay/ledger", "l1b", at(1, 41), at(1, 44))
    hs.advance(at(1, 50))
    hs.settle()
    assert receiver.actions("/pay") == ["trigger", "resolve"]
    for team_path in ("/ana", "/fin", "/mkt"):
        assert receiver.actions(team_path) == ["trigger", "resolve"]
    assert hs.alerts(state="firing") == []
    # downstream gets a fresh grace to catch up: d1..d10 run late but within it; nobody is paged
    for p in DOWNSTREAM:
        hs.run(p, f"{p}-1", at(1, 51), at(1, 55))
    hs.advance(at(2, 0))
    hs.run("pay/ledger", "l2", at(2, 0), at(2, 2))
    hs.advance(at(2, 12))
    hs.settle()
    assert receiver.actions("/pay") == ["trigger", "resolve"]
    for team_path in ("/ana", "/fin", "/mkt"):
        assert receiver.actions(team_path) == ["trigger", "resolve"]


def test_a_downstream_pipeline_still_late_after_its_fresh_grace_pages(h, receiver):
    pipes = ('  - match: "ana/d1"\n    team: analytics\n    schedule: "0 * * * *"\n    grace: 15m\n'
             '    depends_on: ["pay/ledger"]\n')
    hs = h(config(receiver.url, pipelines=pipes))
    hs.run("pay/ledger", "l0", at(0, 0), at(0, 3))
    hs.run("ana/d1", "d0", at(0, 4), at(0, 8))
    hs.run("pay/ledger", "l1", at(1, 0), at(1, 2), ok=False)
    hs.advance(at(1, 30))
    hs.run("pay/ledger", "l1b", at(1, 31), at(1, 33))
    hs.advance(at(1, 45))  # within d1's fresh grace (4 min usual run + 15 min grace from 01:33)
    hs.settle()
    assert [r["body"]["alerts"][0]["labels"]["kind"] for r in receiver.on("/ana")] == ["upstream_failure"] * 2
    hs.advance(at(1, 55))  # past it, d1 still has not run: now it pages its own team
    hs.settle()
    kinds = [(r["body"]["pipemon"]["action"], r["body"]["alerts"][0]["labels"]["kind"]) for r in receiver.on("/ana")]
    assert kinds[-1] == ("trigger", "late")


def test_a_backfill_neither_resolves_todays_alert_nor_raises_lateness(h, receiver):
    hs = h(config(receiver.url))
    hs.run("pay/daily", "d1", at(1, 0), at(1, 2), ok=False)
    hs.settle()
    # a rerun of last week's date succeeds
    hs.clock.set(at(1, 20))
    hs.post([{"pipeline": "pay/daily", "run_id": "backfill", "type": "START", "event_time": at(1, 10),
              "nominal_time": at(1, 0, day=-7)},
             {"pipeline": "pay/daily", "run_id": "backfill", "type": "COMPLETE", "event_time": at(1, 20)}])
    hs.advance(at(1, 40))
    hs.settle()
    assert receiver.actions("/pay") == ["trigger"]
    assert hs.alerts(pipeline="pay/daily")[0]["state"] == "firing"


def test_the_receiver_down_for_10_minutes_loses_nothing_and_duplicates_nothing(h, receiver):
    hs = h(config(receiver.url))
    receiver.failing = {"/pay"}
    hs.run("pay/invoices", "r1", at(1, 0), at(1, 1), ok=False)
    import time
    for _ in range(10):  # ten minutes of retries against a receiver that answers 503
        time.sleep(0.3)
        hs.clock.advance(60)
    time.sleep(1.5)
    [n] = hs.client.get("/api/v1/notifications", params={"receiver": "payments"}).json()["items"]
    assert n["status"] == "pending" and n["attempts"] >= 3 and "503" in n["last_error"]
    assert receiver.on("/pay") == []
    # a receiver that keeps failing raises its own alert through the default route, and shows in /metrics
    [own] = [r for r in receiver.on("/default") if r["body"]["alerts"][0]["labels"]["kind"] == "receiver_failing"]
    assert own["body"]["alerts"][0]["labels"]["receiver"] == "payments"
    from prometheus_client.parser import text_string_to_metric_families
    fams = {f.name: f for f in text_string_to_metric_families(hs.client.get("/metrics").text)}
    samples = {(s.labels.get("receiver"), s.labels.get("outcome")): s.value for s in fams["pipemon_notifications"].samples
               if s.name.endswith("_total")}
    assert samples[("payments", "retried")] >= 3
    assert [s.value for s in fams["pipemon_receiver_consecutive_failures"].samples
            if s.labels["receiver"] == "payments"][0] >= 3
    receiver.failing = set()
    hs.clock.advance(120)
    got = receiver.wait("/pay", 1, timeout=10)
    time.sleep(1.5)
    hs.clock.advance(120)
    time.sleep(1.5)
    assert len(receiver.on("/pay")) == 1 and got[0]["body"]["pipemon"]["action"] == "trigger"
    [n] = hs.client.get("/api/v1/notifications", params={"receiver": "payments"}).json()["items"]
    assert n["status"] == "sent"
    # deliveries work again: the receiver's own alert resolves
    assert [a["state"] for a in hs.alerts(kind="receiver_failing")] == ["resolved"]


def test_a_failure_names_the_failing_task_and_its_root_error(h, receiver):
    hs = h(config(receiver.url))
    t0, t1 = at(1, 0), at(1, 9)
    hs.clock.set(t1)
    task = {"namespace": "pay", "name": "etl", "run_id": "dag-1"}
    hs.post([
        {"pipeline": "pay/etl", "run_id": "dag-1", "type": "START", "event_time": t0},
        {"pipeline": "pay/etl.extract", "run_id": "t-1", "type": "START", "event_time": t0 + 1, "parent": task},
        {"pipeline": "pay/etl.extract", "run_id": "t-1", "type": "COMPLETE", "event_time": t0 + 60, "parent": task},
        {"pipeline": "pay/etl.load", "run_id": "t-2", "type": "START", "event_time": t0 + 61, "parent": task},
        {"pipeline": "pay/etl.load", "run_id": "t-2", "type": "FAIL", "event_time": t0 + 300, "parent": task,
         "error": {"message": "duplicate key value violates unique constraint \"invoices_pkey\"",
                   "type": "UniqueViolation"}},
        {"pipeline": "pay/etl", "run_id": "dag-1", "type": "FAIL", "event_time": t1,
         "error": "upstream task failed"}])
    hs.settle()
    [note] = receiver.on("/pay")
    [alert] = note["body"]["alerts"]
    assert alert["annotations"]["failed_task"] == "pay/etl.load"
    assert "invoices_pkey" in alert["annotations"]["error"]
    [a] = hs.alerts(pipeline="pay/etl")
    assert (a["failed_task"], a["run_id"]) == ("pay/etl.load", "dag-1")


def test_the_noise_report(h, receiver):
    hs = h(config(receiver.url))
    for i, p in enumerate(["pay/a", "pay/b", "pay/a"]):
        hs.run(p, f"r{i}", at(1, 10 * i), at(1, 10 * i + 1), ok=False)
        hs.run(p, f"ok{i}", at(1, 10 * i + 2), at(1, 10 * i + 3))
        hs.advance(at(1, 10 * i + 9))
    hs.settle()
    alerts = hs.alerts()
    failures = [a for a in alerts if a["kind"] == "failure"]
    assert len(failures) == 3  # (pay/a's second run in one hourly slot is also an extra_run notice)
    rep = hs.client.get("/api/v1/reports/noise").json()
    assert rep["alerts"] == len(alerts)
    assert rep["noisiest_pipelines"][0]["pipeline"] == "pay/a"
    triggers = receiver.actions("/pay").count("trigger")
    assert sum(rep["notifications_per_team_per_week"]["payments"].values()) == triggers >= 3
    assert sum(rep["notifications_per_receiver_per_week"]["payments"].values()) == triggers
    assert rep["median_time_to_resolve_s"] == 120  # each failure resolved by the success 2 min later
