"""The dashboard with auth on (the test resolver of tests/api/access_fixtures.py): the login page, the
cookie's attributes, what a team's token sees, the form-post origin check, and logout. No browser here
(tests/web/test_browser.py has one)."""
from __future__ import annotations

import pytest

from pipemon.access import Role
from pipemon.config import loads
from tests.api import access_fixtures as fx
from tests.web.test_pages import failed_run

BROWSER = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}


@pytest.fixture
def settings():
    return loads("""
pipelines:
  - {match: "pay/*", team: payments}
  - {match: "mkt/*", team: marketing}
""")


@pytest.fixture
def dash(client, clock):
    root = {"Authorization": f"Bearer {fx.token_of(None, Role.ORG_ADMIN)}"}
    client.app.state.resolve_caller = fx.resolve
    client.headers.update(root)
    failed_run(client, clock, "pay/invoices", "r1", "pay disk full")
    failed_run(client, clock, "mkt/campaigns", "r2", "mkt quota")
    del client.headers["Authorization"]
    return client


def login(client, token: str, nxt: str = "/", origin: str = "http://testserver"):
    return client.post("/login", data={"token": token, "next": nxt}, headers={"Origin": origin},
                       follow_redirects=False)


def test_pages_send_a_browser_to_the_login_page_and_a_script_gets_a_401(dash):
    r = dash.get("/alerts?team=x", headers=BROWSER, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Falerts%3Fteam%3Dx"
    r = dash.get("/alerts", headers={"Accept": "*/*"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    assert r.headers["www-authenticate"] == "Bearer"
    page = dash.get("/login?next=/alerts")
    assert page.status_code == 200 and 'type="password"' in page.text and 'value="/alerts"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_login_sets_a_strict_httponly_cookie_and_the_team_sees_its_own_only(dash):
    r = login(dash, fx.token_of("payments", Role.VIEWER), "/alerts")
    assert r.status_code == 303 and r.headers["location"] == "/alerts"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"pipemon_token={fx.token_of('payments', Role.VIEWER)};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; over https it is Secure (below)
    home = dash.get("/")
    assert home.status_code == 200 and "pay/invoices" in home.text and "mkt/" not in home.text
    assert "marketing" not in home.text and "payments-viewer" in home.text  # who is logged in
    alerts = dash.get("/alerts")
    assert "pay disk full" in alerts.text and "mkt quota" not in alerts.text
    assert "Acknowledge" not in alerts.text  # a viewer gets no buttons …
    aid = dash.get("/api/v1/alerts").json()["items"][0]["id"]  # the API takes the cookie too
    r = dash.post(f"/alerts/{aid}/ack", data={}, headers={"Origin": "http://testserver"})
    assert r.status_code == 403  # … and no acknowledging by hand either
    assert dash.get("/pipelines/mkt%2Fcampaigns").status_code == 404
    assert dash.get("/runs/r2").status_code == 404
    r = dash.get("/logout", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert 'pipemon_token=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    dash.cookies.clear()
    assert dash.get("/", headers=BROWSER, follow_redirects=False).status_code == 303


def test_an_operator_acts_under_its_own_name(dash):
    login(dash, fx.token_of("marketing", Role.OPERATOR))
    aid = dash.get("/api/v1/alerts").json()["items"][0]["id"]
    r = dash.post(f"/alerts/{aid}/ack", data={"by": "someone-else"}, headers={"Origin": "http://testserver"},
                  follow_redirects=False)
    assert r.status_code == 303 and "acknowledged%20by%20marketing-operator" in r.headers["location"]
    a = dash.get(f"/api/v1/alerts/{aid}").json()
    assert a["pipeline"] == "mkt/campaigns" and a["acknowledged_by"] == "marketing-operator"
    r = dash.post(f"/alerts/{aid}/resolve", data={}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and dash.get(f"/api/v1/alerts/{aid}").json()["state"] == "acknowledged"
    r = dash.post(f"/alerts/{aid}/resolve", data={}, headers={"Referer": "https://evil.example/x"})
    assert r.status_code == 403  # no Origin: the Referer decides


@pytest.mark.parametrize("token, status, says", [
    ("", 400, "paste a token"),
    ("nonsense", 401, "not valid"),
    (fx.REVOKED, 401, "not valid"),
    (fx.token_of("payments", Role.INGEST), 403, "cannot read the dashboard"),
    (fx.token_of(None, Role.METRICS), 403, "cannot read the dashboard"),
])
def test_a_bad_token_is_refused_with_a_reason_and_no_cookie(dash, token, status, says):
    r = login(dash, token)
    assert r.status_code == status and says in r.text and "set-cookie" not in r.headers


def test_a_login_from_another_site_is_refused_and_next_stays_on_this_site(dash):
    r = login(dash, fx.token_of("payments", Role.VIEWER), origin="https://evil.example")
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = login(dash, fx.token_of("payments", Role.VIEWER), nxt="https://evil.example/")
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_over_https_the_cookie_is_secure(pm):
    from fastapi.testclient import TestClient

    from pipemon.api.app import create_app
    app = create_app(pm)
    app.state.resolve_caller = fx.resolve
    with TestClient(app, base_url="https://testserver") as c:
        r = login(c, fx.token_of("payments", Role.ADMIN), origin="https://testserver")
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_auth_off_has_nothing_to_log_into(client):
    assert client.get("/login", follow_redirects=False).headers["location"] == "/"
    assert client.get("/").status_code == 200 and "Log out" not in client.get("/").text


def test_the_dashboards_actions_are_audited(pm, client):
    # an operator's acknowledge from the dashboard is in the audit log, as one through the API is
    from tests.conftest import T0
    r = client.post("/api/v1/events", json=[
        {"pipeline": "aud/x", "run_id": "1", "type": "START", "event_time": T0},
        {"pipeline": "aud/x", "run_id": "1", "type": "FAIL", "event_time": T0 + 5, "error": {"message": "e"}}])
    assert r.status_code == 200, r.text
    aid = client.get("/api/v1/alerts").json()["items"][0]["id"]
    r = client.post(f"/alerts/{aid}/ack", headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code in (200, 303), r.text
    entries = client.get("/api/v1/audit", params={"action": "alert.acknowledge"}).json()["items"]
    assert [(e["target"], e["detail"]["from"]) for e in entries] == [(str(aid), "dashboard")]
