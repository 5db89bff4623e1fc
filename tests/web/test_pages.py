"""The dashboard's pages over HTTP (no browser): status codes, escaping, pagination, the actions' effect in
the API, and /docs and /redoc served from the package. On SQLite and PostgreSQL."""
from __future__ import annotations

import re

import pytest

def post(client, events: list[dict]) -> None:
    r = client.post("/api/v1/events", json=events)
    assert r.status_code == 200, r.text


def failed_run(client, clock, pipeline: str, run_id: str, error: str, tasks: bool = False) -> None:
    ns, name = pipeline.rsplit("/", 1)
    t = clock.now()
    events = [{"pipeline": pipeline, "run_id": run_id, "type": "START", "event_time": t - 600}]
    if tasks:
        parent = {"namespace": ns, "name": name, "run_id": run_id}
        for i, (task, ok) in enumerate([("extract", True), ("transform", False), ("publish", True)]):
            job = {"namespace": ns, "name": f"{name}.{task}", "run_id": f"{run_id}-{task}", "parent": parent}
            events += [{**job, "type": "START", "event_time": t - 500 + i * 100},
                       {**job, "type": "COMPLETE" if ok else "FAIL", "event_time": t - 450 + i * 100,
                        **({} if ok else {"error": {"message": error, "type": "ProgrammingError"}})}]
    events.append({"pipeline": pipeline, "run_id": run_id, "type": "FAIL", "event_time": t - 60,
                   "error": {"message": error, "type": "ProgrammingError"}})
    post(client, events)


def test_the_overview_of_an_empty_fleet_shows_how_to_send_the_first_event(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "No pipelines yet" in r.text and "/api/v1/events" in r.text and "pipemon run" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    from pipemon import __version__
    assert f"pipemon {__version__}" in r.text
    assert client.get("/api/v1").json()["version"] == __version__  # the old JSON stub, moved


def test_the_pipeline_page_answers_the_url_notifications_carry_and_the_plain_form(client, pm, clock):
    failed_run(client, clock, "airflow://prod/daily_sales", "r1", "relation sales_raw does not exist")
    pm.alerts.external_url = "http://dash.example"
    url = pm.alerts.url("airflow://prod/daily_sales")
    assert url == "http://dash.example/pipelines/airflow%3A%2F%2Fprod%2Fdaily_sales"
    for path in (url.removeprefix("http://dash.example"), "/pipelines/airflow://prod/daily_sales"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "relation sales_raw does not exist" in r.text and "failing" in r.text
        assert "Open alerts" in r.text and '/alerts#alert-' in r.text
    r = client.get("/pipelines/airflow://prod/no_such")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "no pipeline" in r.text and "Traceback" not in r.text


@pytest.mark.parametrize("path", ["/?state=exploded", "/?page=0", "/?page=abc", "/?page=99999999",
                                  "/lineage"])
def test_bad_input_is_a_400_page(client, path):
    r = client.get(path)
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html"), r.text


@pytest.mark.parametrize("path", ["/runs/nope", "/alerts/123/deliveries", "/alerts/x/deliveries",
                                  "/lineage/a/b", "/lineage?team=nobody", "/static/%2e%2e%2fpyproject.toml",
                                  "/static/nothing.js"])
def test_what_does_not_exist_is_a_404_page(client, path):
    r = client.get(path)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), (path, r.text)


def test_what_clients_send_is_escaped(client, clock):
    evil = "<img src=x onerror=alert(1)>"
    failed_run(client, clock, f"x/{evil}", "r<1>", f"<script>alert(2)</script>{evil}")
    for path in ("/", "/?q=" + evil, "/pipelines/x%2F" + evil.replace("/", "%2F"), "/runs/r%3C1%3E"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert evil not in r.text and "<script>alert" not in r.text, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in r.text, path


def test_the_overview_pages_the_fleet_worst_first(client, clock):
    t = clock.now()
    post(client, [{"pipeline": f"bulk/p{i:03d}", "run_id": "r", "type": "COMPLETE", "event_time": t - 100,
                   "duration_s": 10} for i in range(230)])
    failed_run(client, clock, "bulk/zz_broken", "r9", "boom")
    r = client.get("/")
    rows = re.findall(r'<tr class="row-(\w+)">', r.text)
    assert len(rows) == 100 and rows[0] == "failing" and "page 1 of 3" in r.text
    last = client.get("/?page=3")
    assert len(re.findall(r'<tr class="row-', last.text)) == 31 and "zz_broken" not in last.text
    only = client.get("/?state=failing")
    assert re.findall(r'<tr class="row-(\w+)">', only.text) == ["failing"]
    found = client.get("/?q=p12")
    assert len(re.findall(r'<tr class="row-', found.text)) == 10  # p120 … p129
    frag = client.get("/?fragment=live")
    assert frag.status_code == 200 and "<html" not in frag.text and "bulk/p000" in frag.text


def test_the_run_page_lists_the_failing_task_first(client, clock):
    failed_run(client, clock, "airflow://prod/orders", "run-7", "relation orders_raw does not exist",
               tasks=True)
    r = client.get("/runs/run-7", params={"pipeline": "airflow://prod/orders"})
    assert r.status_code == 200
    tasks = re.findall(r'<td class="task">([^<]+)</td>', r.text)
    assert tasks == ["airflow://prod/orders.transform", "airflow://prod/orders.extract",
                     "airflow://prod/orders.publish"], tasks
    assert "relation orders_raw does not exist" in r.text


def _alert_id(client, pipeline: str) -> int:
    items = client.get("/api/v1/alerts", params={"pipeline": pipeline}).json()["items"]
    assert items, "the failure opened no alert"
    return items[0]["id"]


def test_acknowledge_silence_and_resolve_from_the_page_change_the_alert_in_the_api(client, clock):
    failed_run(client, clock, "billing/invoices", "r1", "disk full")
    aid = _alert_id(client, "billing/invoices")
    page = client.get("/alerts")
    assert f'data-alert-id="{aid}"' in page.text and "disk full" in page.text
    # an old page's `by` field is ignored: the actor is the caller's token name (auth off: "anonymous")
    r = client.post(f"/alerts/{aid}/ack", data={"by": "alice", "next": "/alerts"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/alerts?notice=")
    a = client.get(f"/api/v1/alerts/{aid}").json()
    assert a["state"] == "acknowledged" and a["acknowledged_by"] == "anonymous"
    assert "alice" not in client.get("/alerts").text
    r = client.post(f"/alerts/{aid}/silence", data={"by": "bob", "duration": "1h", "scope": "kind"})
    assert r.status_code == 200  # followed the redirect to the alerts page
    sil = client.get("/api/v1/silences").json()["items"]
    assert [s["matchers"] for s in sil] == [['pipeline="billing/invoices"', 'kind="failure"']]
    assert sil[0]["created_by"] == "anonymous" and sil[0]["team"] is None
    r = client.post(f"/silences/{sil[0]['id']}/expire", data={"by": "bob"})
    assert r.status_code == 200 and client.get("/api/v1/silences").json()["items"] == []
    client.post(f"/alerts/{aid}/resolve", data={"by": "carol"})
    assert client.get(f"/api/v1/alerts/{aid}").json()["state"] == "resolved"


def test_actions_refuse_bad_input_and_cross_site_posts(client, clock):
    failed_run(client, clock, "billing/payouts", "r1", "timeout")
    aid = _alert_id(client, "billing/payouts")
    r = client.post(f"/alerts/{aid}/ack", data={"by": "mallory"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert client.get(f"/api/v1/alerts/{aid}").json()["state"] == "firing"
    assert client.post(f"/alerts/{aid}/silence", data={"duration": "10y"}).status_code == 400
    assert client.post("/alerts/999999/ack", data={}).status_code == 404
    assert client.post("/alerts/abc/resolve", data={}).status_code == 404
    r = client.post(f"/alerts/{aid}/ack", data={"next": "https://evil.example/"}, follow_redirects=False)
    assert r.headers["location"].startswith("/alerts?")  # never redirected off the site


def test_docs_and_redoc_load_their_assets_from_the_package(client):
    for path in ("/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 200
        refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', r.text)
        assert refs and all(u.startswith("/") for u in refs), refs
        assert "https://" not in r.text and "http://" not in r.text, path
        for u in refs:
            if u.startswith("/static/"):
                assert client.get(u).status_code == 200, u
    assert client.get("/openapi.json").status_code == 200


ROW = re.compile(r'<tr class="row-(\w+)">\s*<td>.*?</td>\s*'
                 r'<td><a href="[^"]+">([^<]+)</a></td>\s*<td>([^<]+)</td>', re.S)


def test_every_pipeline_is_on_exactly_one_page_grouped_by_team_worst_team_first(client, clock):
    t = clock.now()
    teams = {"alpha": 90, "beta": 80, "gamma": 70}
    post(client, [{"pipeline": f"{team}/p{i:03d}", "run_id": "r", "type": "COMPLETE", "event_time": t - 100,
                   "duration_s": 10, "team": team} for team, n in teams.items() for i in range(n)])
    for name in ("gamma/p005", "gamma/p050"):
        failed_run(client, clock, name, "r2", "boom")
    seen = []
    for n in (1, 2, 3):
        seen += ROW.findall(client.get(f"/?page={n}").text)
    assert len(seen) == 240 and len({k for _, k, _ in seen}) == 240
    rank = {"failing": 0, "healthy": 6}
    worst = {"gamma": 0, "alpha": 6, "beta": 6}
    assert seen == sorted(seen, key=lambda r: (worst[r[2]], r[2], rank[r[0]], r[1]))
    assert seen[:2] == [("failing", "gamma/p005", "gamma"), ("failing", "gamma/p050", "gamma")]
    beta = ROW.findall(client.get("/?team=beta&page=1").text)
    assert len(beta) == 80 and {r[2] for r in beta} == {"beta"}
    text = ROW.findall(client.get("/?q=p05").text)  # p050 … p059 of each team, gamma's failing one first
    assert len(text) == 30 and text[0] == ("failing", "gamma/p050", "gamma")


def test_a_silenced_failing_pipeline_shows_failing_and_muted(client, clock):
    failed_run(client, clock, "billing/invoices", "r1", "disk full")
    r = client.post("/api/v1/silences", json={"matchers": ['pipeline="billing/invoices"'], "duration": "2h",
                                              "created_by": "bob", "comment": "migration"})
    assert r.status_code == 200, r.text
    overview = client.get("/").text
    row = overview[overview.index('href="/pipelines/billing%2Finvoices"') - 400:]
    assert "st-failing" in row[:600] and "st-muted" in row[:600]
    page = client.get("/pipelines/billing%2Finvoices").text
    assert 'data-testid="muted"' in page and "migration" in page and "st-failing" in page
