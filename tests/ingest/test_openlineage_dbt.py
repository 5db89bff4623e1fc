"""dbt through dbt-ol, replayed from the events a real `dbt-ol build --consume-structured-logs` sent
(tests/fixtures/dbt/README.md says how they were recorded): one model errors with a database error, one test
fails, two models are skipped because of them.

Skipped models are `skipped`, not failed or aborted, and count as no failure; what broke names the failing
model and its database error, in the run, the pipeline's reason, the alert and the notification a team gets.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipemon.cli import app as cli
from pipemon.ingest import openlineage
from pipemon.model import EventType
from tests.alerting.harness import Harness
from tests.alerting.receiver import Receiver
from tests.conftest import LiveServer

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dbt" / "build.jsonl"
LINES = FIXTURE.read_text().splitlines()
PIPELINE = "dbt/dbt-run-shop"
HEADLINE = ('model orders_enriched failed: Binder Error: Values list "o" does not have a column named '
            '"discount" (and 1 more)')
LAST = max(openlineage.parse(line.encode(), 0.0)[0].time for line in LINES)
CONFIG = """
receivers:
  - name: data
    webhook: {{url: "{url}/data"}}
route:
  receiver: data
  group_by: [pipeline]
  group_wait: 0s
"""


def test_dbt_ol_marks_exactly_the_skipped_nodes():
    events = [e for line in LINES for e in openlineage.parse(line.encode(), 0.0)]
    skipped = sorted(e.name for e in events if e.skipped)
    assert skipped == ["model.shop.customer_orders", "model.shop.orders_daily"]
    assert all(e.type is EventType.ABORT for e in events if e.skipped)
    # the failing model's FAIL is no skip, and keeps dbt's whole message (the failing SQL line included)
    fail = next(e for e in events if e.name == "model.shop.orders_enriched" and e.type is EventType.FAIL)
    assert not fail.skipped and fail.error_message is not None and "LINE 6:" in fail.error_message


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_replayed_through_the_front_door_skipped_is_not_failed_and_the_page_names_the_model(
        db_url, receiver):
    """POST /api/v1/lineage, line by line, into SQLite and PostgreSQL; the notification to a local webhook."""
    hs = Harness(db_url, CONFIG.format(url=receiver.url), LAST + 5)
    try:
        for line in LINES:
            r = hs.client.post("/api/v1/lineage", content=line, headers={"content-type": "application/json"})
            assert r.status_code in (200, 201), r.text
        hs.settle()
        [run] = hs.client.get(f"/api/v1/pipelines/{PIPELINE}/runs").json()["items"]
        assert run["status"] == "failed"
        assert run["what_broke"]["headline"] == HEADLINE
        assert "LINE 6: select o.id" in run["what_broke"]["trace"]
        tree = hs.client.get(f"/api/v1/runs/{run['run_id']}", params={"pipeline": PIPELINE}).json()
        status = {t["task"]: t["status"] for t in tree["tasks"]}
        assert status["model customer_orders"] == status["model orders_daily"] == "skipped"
        assert status["model orders_enriched"] == status["test unique_stg_customers_id"] == "failed"
        assert status["model stg_orders"] == status["test not_null_stg_orders_id"] == "succeeded"
        assert sorted(tree["failed_tasks"]) == ["dbt/model.shop.orders_enriched",
                                                "dbt/test.shop.unique_stg_customers_id.a6a76acf47"]
        errors = {t["task"]: (t["error"] or {}).get("message") for t in tree["tasks"]}
        assert errors["test unique_stg_customers_id"] == "Got 1 result, configured to fail if != 0"
        assert errors["model orders_daily"] is None  # skipped: nothing broke there
        p = hs.client.get(f"/api/v1/pipelines/{PIPELINE}").json()
        assert p["state"] == "failing" and HEADLINE in p["reason"]
        assert p["metrics"]["runs_total"] == 1 and p["metrics"]["consecutive_failures"] == 1
        assert [x["id"] for x in hs.client.get("/api/v1/pipelines").json()["items"]] == [PIPELINE]
        [note] = receiver.wait("/data", 1)
        [alert] = note["body"]["alerts"]
        assert alert["annotations"]["summary"] == f"{PIPELINE} failed: {HEADLINE}"
        assert alert["annotations"]["failed_task"] == "dbt/model.shop.orders_enriched"
        assert alert["annotations"]["error"].startswith("Runtime Error in model orders_enriched")
        assert "^^^^^^^^^^" in alert["annotations"]["output"]  # where in the SQL the binder failed
        assert "LINE 6:" in alert["annotations"]["description"]
        [api_alert] = hs.alerts(pipeline=PIPELINE)
        assert api_alert["summary"] == alert["annotations"]["summary"]
        assert api_alert["output"] == alert["annotations"]["output"]
    finally:
        hs.close()


def test_the_cli_shows_what_broke_and_the_tasks_failing_first(tmp_path):
    """A real `pipemon serve`; `status`, `alerts` and `show` read it over HTTP as a user would."""
    server = LiveServer(f"sqlite:///{tmp_path}/p.db", tmp_path).start()
    try:
        import httpx
        r = httpx.post(server.url + "/api/v1/lineage", content="[" + ",".join(LINES) + "]",
                       headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code in (200, 201), r.text
        runner = CliRunner()
        env = {"COLUMNS": "400"}
        status = runner.invoke(cli, ["status", "--url", server.url], env=env)
        assert status.exit_code == 0, status.output
        assert "model orders_enriched failed: Binder Error" in status.output
        show = runner.invoke(cli, ["show", PIPELINE, "--url", server.url], env=env)
        assert show.exit_code == 0, show.output
        out = show.output
        tasks = out[out.index("tasks of run"):]
        rows = [line for line in tasks.splitlines() if line.startswith(("│ model ", "│ test ", "│ seed "))]
        names = [json.dumps(line.split("│")[1].strip()) for line in rows]
        # what broke first: the model's error, then the failed test
        assert names[:2] == ['"model orders_enriched"', '"test unique_stg_customers_id"'], names
        assert len(rows) == 9
        assert any("model orders_daily" in line and "skipped" in line for line in rows)
        assert 'what broke: ' + HEADLINE in " ".join(out.split())
        assert "LINE 6: select o.id" in out
    finally:
        server.stop()
