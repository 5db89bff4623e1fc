"""Team isolation in detail (the matrix, test_access_matrix.py, covers every route): a team's silence mutes
its own alerts only, whatever its matchers say; the actor is the token's name, never the body's; an
operator expires only its team's silences; a notification grouping several teams' alerts shows a team
its own; and the receivers a team may test. On SQLite and PostgreSQL."""
from __future__ import annotations

import pytest

from pipemon.access import Role
from pipemon.config import loads
from pipemon.engine.matchers import parse_all
from pipemon.engine.mute import Muter, Silence
from pipemon.engine.route import compile_routes, receiver_teams
from tests.api import access_fixtures as fx

CONFIG = """
pipelines:
  - {match: "pay/*", team: payments}
  - {match: "mkt/*", team: marketing}
"""


@pytest.fixture
def settings():
    return loads(CONFIG)


def auth(client):
    client.app.state.resolve_caller = fx.resolve
    return lambda team, role: {"Authorization": f"Bearer {fx.token_of(team, role)}"}


def fail(client, clock, pipeline: str, as_: dict) -> int:
    t = clock.now()
    r = client.post("/api/v1/events", headers=as_, json=[
        {"pipeline": pipeline, "run_id": "r1", "type": "START", "event_time": t - 600},
        {"pipeline": pipeline, "run_id": "r1", "type": "FAIL", "event_time": t - 60, "error": "boom"}])
    assert r.status_code == 200, r.text
    root = {"Authorization": f"Bearer {fx.token_of(None, Role.ORG_ADMIN)}"}
    items = client.get("/api/v1/alerts", params={"pipeline": pipeline}, headers=root).json()["items"]
    assert items, "the failure opened no alert"
    return items[0]["id"]


def test_a_team_silence_mutes_only_that_teams_alerts_whatever_its_matchers(client, clock):
    tok = auth(client)
    fail(client, clock, "pay/a", tok("payments", Role.INGEST))
    fail(client, clock, "mkt/a", tok("marketing", Role.INGEST))
    r = client.post("/api/v1/silences", headers=tok("payments", Role.OPERATOR),
                    json={"matchers": ['pipeline=~".+"'], "duration": "2h", "comment": "everything?"})
    assert r.status_code == 200 and r.json()["team"] == "payments", r.text
    root = tok(None, Role.ORG_ADMIN)
    pay = client.get("/api/v1/pipelines/pay%2Fa", headers=root).json()
    mkt = client.get("/api/v1/pipelines/mkt%2Fa", headers=root).json()
    # silenced is not healthy: the state stays, notifications are muted
    assert pay["state"] == "failing" and pay["muted"], pay
    assert mkt["state"] == "failing" and not mkt["muted"], mkt  # the payments silence does not reach it
    # marketing neither sees nor can expire it
    sid = r.json()["id"]
    assert client.get("/api/v1/silences", headers=tok("marketing", Role.VIEWER)).json()["items"] == []
    r = client.delete(f"/api/v1/silences/{sid}", headers=tok("marketing", Role.OPERATOR))
    assert r.status_code == 404 and r.json()["message"] == f"no silence {sid}"
    assert client.get("/api/v1/silences", headers=root).json()["items"][0]["state"] == "active"
    # an org admin's silence matches every team, as before
    r = client.post("/api/v1/silences", headers=root,
                    json={"matchers": ['pipeline="mkt/a"'], "duration": "1h"})
    assert r.json()["team"] is None
    assert client.get("/api/v1/pipelines/mkt%2Fa", headers=root).json()["muted"]
    r = client.delete(f"/api/v1/silences/{sid}", headers=tok("payments", Role.OPERATOR))
    assert r.status_code == 200 and r.json()["state"] == "expired"


def test_the_actor_is_the_tokens_name_never_the_bodys(client, clock):
    tok = auth(client)
    aid = fail(client, clock, "pay/b", tok("payments", Role.INGEST))
    op = tok("payments", Role.OPERATOR)
    r = client.post(f"/api/v1/alerts/{aid}/ack", headers=op, json={"by": "the-ceo", "comment": "mine"})
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "payments-operator", r.text
    r = client.post("/api/v1/silences", headers=op,
                    json={"matchers": ['kind="late"'], "duration": "1h", "created_by": "the-ceo"})
    assert r.json()["created_by"] == "payments-operator"
    r = client.post(f"/api/v1/alerts/{aid}/resolve", headers=tok("payments", Role.ADMIN), json={"by": "x"})
    assert r.status_code == 200 and r.json()["resolved_by"] == "resolved by payments-admin", r.text
    doc = client.get("/openapi.json").json()["components"]["schemas"]
    assert "Ignored" in doc["NewSilence"]["properties"]["created_by"]["description"]


def test_rights_by_role(client, clock):
    tok = auth(client)
    aid = fail(client, clock, "pay/c", tok("payments", Role.INGEST))
    assert client.get("/api/v1/alerts").status_code == 401
    assert client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {fx.REVOKED}"}).status_code == 401
    assert client.get("/api/v1/alerts", headers=tok("payments", Role.INGEST)).status_code == 403
    assert client.get("/api/v1/alerts", headers=tok(None, Role.METRICS)).status_code == 403
    r = client.post(f"/api/v1/alerts/{aid}/ack", headers=tok("payments", Role.VIEWER))
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert client.get("/metrics", headers=tok("payments", Role.ADMIN)).status_code == 403
    assert client.get("/metrics", headers=tok(None, Role.METRICS)).status_code == 200
    assert client.get("/metrics").status_code == 401
    # another team's alert is a 404 with a missing one's message, for reads and writes alike
    for method, path in (("GET", f"/api/v1/alerts/{aid}"), ("POST", f"/api/v1/alerts/{aid}/ack")):
        r = client.request(method, path, headers=tok("marketing", Role.OPERATOR))
        assert r.status_code == 404 and r.json()["message"] == f"no alert {aid}"
    summary = client.get("/api/v1/summary", headers=tok("marketing", Role.VIEWER)).json()
    assert summary["pipelines"] == 0 and summary["teams"] == {}


def test_auth_off_everything_is_the_anonymous_org_admin(client, clock):
    aid = fail(client, clock, "mkt/d", {})
    assert client.get("/metrics").status_code == 200
    r = client.post(f"/api/v1/alerts/{aid}/ack", json={"by": "bob"})
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "anonymous"


# --- pure rules -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("silence_team, alert_team, muted", [
    (None, "payments", True), (None, "marketing", True),          # org-wide: as its matchers say
    ("payments", "payments", True), ("payments", "marketing", False),
    ("payments", None, False),                                    # an alert with no team label
])
def test_silence_matches_its_team_only(silence_team, alert_team, muted):
    m = Muter()
    m.silences[1] = Silence(1, parse_all(['pipeline=~".+"']), 0.0, 100.0, "op", "", silence_team)
    labels = {"pipeline": "x/y"} | ({"team": alert_team} if alert_team else {})
    assert (m.silence_for(labels, 50.0) is not None) is muted
    assert m.silence_for(labels, 150.0) is None  # and never once it ended


def test_receiver_teams():
    s = loads("""
receivers: [{name: root, webhook: {url: "http://h/r"}}, {name: pay, webhook: {url: "http://h/p"}},
            {name: shared, webhook: {url: "http://h/s"}}, {name: pay-pd, webhook: {url: "http://h/d"}}]
route:
  receiver: root
  routes:
    - matchers: ['team="payments"']
      receiver: pay
      routes: [{matchers: ['severity="critical"'], receiver: pay-pd}]
    - {matchers: ['team="payments"', 'kind="late"'], receiver: shared}
    - {matchers: ['team="marketing"'], receiver: shared}
    - {matchers: ['team=~"m.*"'], receiver: pay}
""")
    assert receiver_teams(compile_routes(s.route)) == {"root": None, "pay": None, "pay-pd": "payments",
                                                        "shared": None}


def test_a_notification_is_a_teams_only_when_its_list_names_the_team_whole(pm):
    """`carries_team` matches a JSON list element, never a part of another team's name."""
    import sqlalchemy as sa

    from pipemon.store import alerting as store
    teams = {"a": ["payments"], "b": ["payments-eu"], "c": ['x"payments'], "d": ["marketing", "payments"],
             "e": ["pay%ments"], "f": ["payments\\"]}
    with pm.db.begin() as conn:
        for key, ts in teams.items():
            store.insert_notification(conn, key=key, receiver="r", action="trigger", group_key="g",
                                      teams=ts, fingerprints=[], body="{}", now=1.0)
        got = {row.key for row in conn.execute(sa.select(store.notifications.c.key)
                                               .where(store.carries_team("payments")))}
        assert got == {"a", "d"}
        assert {r.key for r in store.list_notifications(conn, scope="pay%ments").items} == {"e"}
        assert len(store.list_notifications(conn, scope=None).items) == len(teams)
