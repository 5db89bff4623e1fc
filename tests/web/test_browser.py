"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright, against a
live `pipemon serve` fed by the demo simulator (30 hours of its fleet, 240 pipelines) plus one known
incident, with a local webhook receiver taking the notifications.

One test walks the on-call's path, so the server is built and fed once (and once per xdist worker):
overview → live update → the link in the notification → the run → lineage → alerts (ack, silence) →
/docs and /redoc. Every request the browser makes is recorded; none may leave 127.0.0.1. Screenshots of
each page go to $PIPEMON_TEST_ARTIFACTS (default tests/web/artifacts/, git-ignored).
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.alerting.receiver import Receiver
from tests.conftest import LiveServer

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("PIPEMON_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
ROOT = "airflow://e2e/orders_daily"       # fails; writes warehouse.e2e_orders
CHILD = "dbt://e2e/orders_mart"           # reads warehouse.e2e_orders
ERROR = 'relation "orders_raw" does not exist'

pytestmark = pytest.mark.slow


def _skip_reason() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


def _config(server_url: str, receiver_url: str) -> str:
    from pipemon import sim
    return sim.demo_config(sim.build_fleet(0, 240), alerting=False) + f"""
receivers:
  - name: hook
    webhook: {{url: "{receiver_url}/hook"}}
route:
  receiver: hook
  group_by: [pipeline]
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
alerting:
  external_url: "{server_url}"
"""


def _post(url: str, events: list[dict]) -> None:
    for i in range(0, len(events), 5000):
        r = httpx.post(url + "/api/v1/events", json=events[i:i + 5000], timeout=300)
        assert r.status_code == 200, r.text[:2000]


def _feed_simulator(url: str, hours: float) -> None:
    from pipemon import sim
    now = time.time()
    start = now // 3600 * 3600 - hours * 3600
    events = list(sim.Feeder(sim.build_fleet(0, 240), start, fmt="native").history(start, now))
    _post(url, events)


def _incident(url: str) -> None:
    """A known failure with tasks (the middle one fails) upstream of a mart: the root cause to find."""
    t = time.time()
    ns, name = ROOT.rsplit("/", 1)
    out = ["warehouse/e2e_orders"]
    ev = [{"pipeline": ROOT, "run_id": "e2e-ok", "type": "START", "event_time": t - 7200, "outputs": out},
          {"pipeline": ROOT, "run_id": "e2e-ok", "type": "COMPLETE", "event_time": t - 6900, "outputs": out,
           "metrics": {"rows": 1200}},
          {"pipeline": CHILD, "run_id": "m-ok", "type": "START", "event_time": t - 6800, "inputs": out},
          {"pipeline": CHILD, "run_id": "m-ok", "type": "COMPLETE", "event_time": t - 6700, "inputs": out},
          {"pipeline": ROOT, "run_id": "e2e-bad", "type": "START", "event_time": t - 900, "outputs": out}]
    parent = {"namespace": ns, "name": name, "run_id": "e2e-bad"}
    for i, (task, ok) in enumerate([("extract", True), ("transform", False), ("publish", True)]):
        tid = f"e2e-bad-{task}"
        ev += [{"namespace": ns, "name": f"{name}.{task}", "run_id": tid, "type": "START",
                "event_time": t - 800 + i * 200, "parent": parent},
               {"namespace": ns, "name": f"{name}.{task}", "run_id": tid,
                "type": "COMPLETE" if ok else "FAIL", "event_time": t - 700 + i * 200, "parent": parent,
                **({} if ok else {"error": {"message": ERROR, "type": "UndefinedTable"}})}]
    ev.append({"pipeline": ROOT, "run_id": "e2e-bad", "type": "FAIL", "event_time": t - 60, "outputs": out,
               "error": {"message": f"Task transform failed: {ERROR}", "type": "UndefinedTable"},
               "log": "[transform] psycopg.errors.UndefinedTable: " + ERROR})
    _post(url, ev)


def _notification_link(receiver: Receiver, pipeline: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in receiver.on("/hook"):
            for a in r["body"]["alerts"]:
                if a["labels"].get("pipeline") == pipeline and a["labels"].get("kind") == "failure":
                    return a["generatorURL"]
        receiver.wait("/hook", len(receiver.on("/hook")) + 1, timeout=1.0)
    raise AssertionError(f"no failure notification for {pipeline} within {timeout:.0f}s")


@pytest.fixture
def served(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    receiver = Receiver()
    server = LiveServer(f"sqlite:///{tmp_path / 'dash.db'}", tmp_path)
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(_config(server.url, receiver.url))
    server.config = str(cfg)
    server.start(timeout=60)
    try:
        _feed_simulator(server.url, hours=30)
        _incident(server.url)
        yield server, receiver
    finally:
        server.stop()
        receiver.close()


def test_the_dashboard_in_a_real_browser(served):
    from playwright.sync_api import expect, sync_playwright

    server, receiver = served
    url = server.url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    api = httpx.Client(base_url=url, timeout=30)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, timezone_id="Europe/Paris")
            page.on("request", lambda req: requests.append(req.url))

            def shot(name: str, full: bool = False) -> None:
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full)

            # 1. The overview shows the fleet, worst first, grouped by team.
            page.goto(url + "/")
            total = int(page.locator('[data-count="total"]').inner_text().replace(",", ""))
            # every pipeline the store holds (how many of the 240 ran in the fed 30 hours depends on the hour)
            assert total == httpx.get(url + "/api/v1/summary").json()["pipelines"] and total >= 200
            assert page.locator(".teams li").count() >= 7
            first = page.locator("table.pipelines tbody tr:not(.team-row)").first
            expect(first).to_contain_text("failing")
            shot("overview")

            # … and updates without a reload: a pipeline that breaks now appears by itself.
            page.goto(url + "/?state=failing")
            page.evaluate("window.__stillHere = 1")
            _post(url, [{"pipeline": "cron://e2e-host/fresh_failure", "run_id": "f1", "type": "START",
                         "event_time": time.time() - 30},
                        {"pipeline": "cron://e2e-host/fresh_failure", "run_id": "f1", "type": "FAIL",
                         "event_time": time.time(), "error": "disk quota exceeded"}])
            expect(page.locator("#live")).to_contain_text("cron://e2e-host/fresh_failure", timeout=30_000)
            assert page.evaluate("window.__stillHere") == 1, "the page reloaded"
            expect(page.locator('[data-count="total"]')).to_have_text(f"{total + 1:,}")
            shot("overview-failing")

            # Times are the viewer's (Paris), UTC on hover.
            stamp = page.locator("table.pipelines time").first
            assert stamp.get_attribute("title").endswith(" UTC")
            assert "UTC" not in stamp.inner_text()

            # The team filter.
            page.goto(url + "/")
            page.select_option("select[name=team]", "finance")
            page.click("form.filters button")
            expect(page.locator("h2", has_text="Pipelines of finance")).to_be_visible()
            teams = page.locator("table.pipelines tbody td:nth-child(3)").all_inner_texts()
            assert teams and set(teams) == {"finance"}

            # 2. The link in the notification opens the failing pipeline's page, with its error.
            link = _notification_link(receiver, ROOT)
            assert link == url + "/pipelines/airflow%3A%2F%2Fe2e%2Forders_daily"
            page.goto(link)
            expect(page.locator("h1")).to_have_text(ROOT)
            expect(page.locator(".state-box")).to_contain_text("failing")
            expect(page.locator("[data-testid=error]")).to_contain_text(ERROR)
            expect(page.locator("svg.chart").first).to_be_visible()
            expect(page.locator(".neighbours")).to_contain_text(CHILD)
            shot("pipeline", full=True)

            # 3. Its failed run: the tasks, the failing one first, and the log.
            page.locator("table.runs a", has_text="e2e-bad").click()
            expect(page.locator("h1")).to_have_text("Run e2e-bad")
            tasks = page.locator("table.tasks tbody tr")
            expect(tasks).to_have_count(3)
            expect(tasks.first).to_contain_text("orders_daily.transform")
            expect(tasks.first).to_contain_text("failed")
            expect(tasks.first).to_contain_text(ERROR)
            expect(page.locator("pre.log")).to_contain_text("UndefinedTable")
            shot("run")

            # 4. Lineage around the mart: the failing upstream is the root cause, the mart affected.
            page.goto(url + "/lineage/" + CHILD.replace(":", "%3A").replace("/", "%2F"))
            expect(page.locator(".rootcause")).to_contain_text(ROOT)
            expect(page.locator(f'svg.lineage a.root[data-pipeline="{ROOT}"]')).to_have_count(1)
            expect(page.locator(f'svg.lineage a.affected[data-pipeline="{CHILD}"]')).to_have_count(1)
            shot("lineage")

            # 5. Alerts: acknowledge and silence from the page; the API sees both.
            aid = next(a["id"] for a in api.get("/api/v1/alerts", params={"pipeline": ROOT}).json()["items"]
                       if a["kind"] == "failure")
            page.goto(url + "/alerts")  # auth off: every change is the anonymous org admin's
            row = page.locator(f'li[data-alert-id="{aid}"]')
            expect(row).to_contain_text(ERROR)
            shot("alerts")
            row.get_by_role("button", name="Acknowledge").focus()
            page.keyboard.press("Enter")  # keyboard-reachable
            expect(page.locator(".notice")).to_contain_text(f"alert {aid} acknowledged by anonymous")
            a = api.get(f"/api/v1/alerts/{aid}").json()
            assert a["state"] == "acknowledged" and a["acknowledged_by"] == "anonymous"
            row = page.locator(f'li[data-alert-id="{aid}"]')
            expect(row.locator(".acked-by")).to_have_text("anonymous")
            row.locator("select[name=duration]").select_option("1d")
            row.get_by_role("button", name="Silence").click()
            expect(page.locator(".notice")).to_contain_text("added by anonymous for 1d")
            silences = api.get("/api/v1/silences").json()["items"]
            mine = [s for s in silences if f'pipeline="{ROOT}"' in s["matchers"]]
            assert mine and mine[0]["created_by"] == "anonymous" and 'kind="failure"' in mine[0]["matchers"]
            expect(page.locator(f'tr[data-silence-id="{mine[0]["id"]}"]')).to_be_visible()
            row = page.locator(f'li[data-alert-id="{aid}"]')
            row.locator("details summary").click()
            expect(row.locator(".deliveries")).to_contain_text("hook")
            shot("alerts-after", full=True)

            # 6. The API docs render from the package's own assets.
            page.goto(url + "/docs")
            expect(page.locator(".swagger-ui .info")).to_contain_text("pipemon", timeout=30_000)
            shot("docs")
            page.goto(url + "/redoc")
            expect(page.locator("h1").first).to_contain_text("pipemon", timeout=30_000)
            expect(page.locator("h2", has_text="Ingest native events")).to_be_visible()
            shot("redoc")

            # 7. On a phone.
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(link)
            expect(page.locator("[data-testid=error]")).to_be_visible()
            shot("pipeline-phone")
        finally:
            browser.close()

    outside = [u for u in requests if not re.match(r"^(http://127\.0\.0\.1:\d+/|data:|about:|blob:)", u)]
    assert requests and not outside, outside


def test_a_team_logs_in_with_its_token_and_sees_its_pipelines_only(db_url):
    """Auth on (the test resolver, tests/api/access_fixtures.py): the browser is sent to /login, pastes
    payments' viewer token, and from then on sees payments' pipelines only; marketing's page is a 404."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if not db_url.startswith("sqlite"):
        pytest.skip("one backend is enough for the browser: the isolation is tested on both elsewhere")
    from playwright.sync_api import expect, sync_playwright

    from pipemon.access import Role
    from pipemon.app import build
    from pipemon.config import loads
    from tests.api import access_fixtures as fx

    pm = build(db_url, loads('pipelines: [{match: "pay/*", team: payments}, '
                             '{match: "mkt/*", team: marketing}]'))
    served = fx.serve(pm)
    try:
        t = time.time()
        root = fx.client(served.url, fx.token_of(None, Role.ORG_ADMIN))
        for p in ("pay/invoices", "pay/refunds", "mkt/campaigns", "mkt/leads"):
            r = root.post("/api/v1/events", json=[
                {"pipeline": p, "run_id": "1", "type": "START", "event_time": t - 120},
                {"pipeline": p, "run_id": "1", "type": "COMPLETE", "event_time": t - 60}])
            assert r.status_code == 200, r.text
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page()
                page.goto(served.url + "/")
                expect(page).to_have_url(served.url + "/login?next=%2F")
                page.fill("#token", fx.token_of("payments", Role.VIEWER))
                page.get_by_role("button", name="Log in").click()
                expect(page).to_have_url(served.url + "/")
                expect(page.locator('[data-count="total"]')).to_have_text("2")
                names = page.locator("table.pipelines tbody tr:not(.team-row) a").all_inner_texts()
                assert sorted(n for n in names if "/" in n) == ["pay/invoices", "pay/refunds"], names
                assert "mkt/" not in page.content() and "marketing" not in page.content()
                expect(page.locator("header .session")).to_contain_text("payments-viewer")
                cookie = page.context.cookies()[0]
                assert cookie["name"] == "pipemon_token" and cookie["httpOnly"]
                assert cookie["sameSite"] == "Strict"
                r = page.goto(served.url + "/pipelines/mkt%2Fcampaigns")
                assert r is not None and r.status == 404
                page.goto(served.url + "/")
                page.get_by_role("button", name="Log out").click()
                expect(page).to_have_url(served.url + "/login")
                assert page.context.cookies() == []
            finally:
                browser.close()
    finally:
        served.stop()
        pm.close()
