"""A real Airflow (2.10.5 + apache-airflow-providers-openlineage 2.8.0) against a live `pipemon serve`.

`.ci/run` installs that Airflow into a cached venv of its own and sets PIPEMON_TEST_AIRFLOW to its `airflow`
binary; without it the test is skipped. Three `airflow dags test` runs (the DAGs in
tests/fixtures/airflow/pipemon_dags.py, one invocation each): `orders_daily`, whose middle task raises, its
last one then `upstream_failed`; `customers_daily`, which succeeds; `invoices_hourly`, whose only task fails
its first try and succeeds on the retry.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer

AIRFLOW = os.environ.get("PIPEMON_TEST_AIRFLOW")
DAGS = Path(__file__).parent.parent / "fixtures" / "airflow" / "pipemon_dags.py"
NS = "prod_airflow"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not AIRFLOW or not Path(AIRFLOW).is_file(),
                       reason="PIPEMON_TEST_AIRFLOW (path to the `airflow` binary of a venv with "
                              "apache-airflow 2.10.5 and apache-airflow-providers-openlineage 2.8.0) "
                              "is not set; .ci/run sets it"),
]


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    assert AIRFLOW is not None
    p = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=180, check=False)
    return p


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """pipemon serving, and the three DAG runs sent to it by the provider's HTTP transport."""
    tmp = tmp_path_factory.mktemp("airflow")
    server = LiveServer(f"sqlite:///{tmp}/pipemon.db", tmp).start()
    home, dags = tmp / "home", tmp / "dags"
    dags.mkdir()
    shutil.copy(DAGS, dags / DAGS.name)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__OPENLINEAGE__NAMESPACE": NS,
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "http", "url": server.url, "timeout": 10}),
           "PATH": f"{Path(AIRFLOW or '').parent}:{os.environ.get('PATH', '')}"}
    try:
        done = airflow(env, "db", "migrate")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        for dag in ("orders_daily", "customers_daily", "invoices_hourly"):  # logical date: now (an old date
            done = airflow(env, "dags", "test", dag)                       # would be a backfill)
            out = done.stdout + done.stderr
            assert "Successfully emitted OpenLineage" in out, out[-3000:]
        api = httpx.Client(base_url=server.url, timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the provider posts from a thread pool: wait until all landed
            runs = [api.get(f"/api/v1/pipelines/{NS}/{d}/runs").json().get("items", [])
                    for d in ("orders_daily", "customers_daily", "invoices_hourly")]
            if all(r and r[0]["status"] != "running" for r in runs):
                break
            time.sleep(0.3)
        yield api, server
    finally:
        server.stop()


def test_one_run_per_dag_run_and_figures_count_dag_runs_only(world):
    api, _ = world
    for dag, status, rate in (("orders_daily", "failed", 0.0), ("customers_daily", "succeeded", 1.0),
                              ("invoices_hourly", "succeeded", 1.0)):
        runs = api.get(f"/api/v1/pipelines/{NS}/{dag}/runs").json()["items"]
        assert [r["status"] for r in runs] == [status], (dag, runs)
        m = api.get(f"/api/v1/pipelines/{NS}/{dag}").json()["metrics"]
        assert (m["runs_total"], m["success_rate_24h"]) == (1, rate), (dag, m)
        assert (m["last_success_at"] is None) == (status == "failed"), (dag, m)
    pipelines = api.get("/api/v1/pipelines").json()["items"]
    assert not any(p["id"].startswith(f"{NS}/orders_daily.") for p in pipelines)  # tasks are no pipelines


def test_the_alert_names_the_failing_task_and_its_error_and_the_dags_owner(world):
    api, _ = world
    [alert] = api.get("/api/v1/alerts", params={"pipeline": f"{NS}/orders_daily"}).json()["items"]
    assert alert["kind"] == "failure"
    assert "transform failed: ValueError: bad row in orders: id=42" in alert["summary"], alert
    assert alert["failed_task"] == f"{NS}/orders_daily.transform"
    assert alert["team"] == "orders-team"
    assert not api.get("/api/v1/alerts", params={"pipeline": f"{NS}/invoices_hourly"}).json()["items"]


def test_the_run_lists_its_tasks_the_upstream_failed_one_included_and_the_stack_trace(world):
    api, _ = world
    [run] = api.get(f"/api/v1/pipelines/{NS}/orders_daily/runs").json()["items"]
    full = api.get(f"/api/v1/runs/{run['run_id']}", params={"pipeline": f"{NS}/orders_daily"}).json()
    assert sorted((t["task"], t["status"]) for t in full["tasks"]) == [("extract", "succeeded"),
                                                                       ("transform", "failed")]
    assert full["not_run"] == [{"task": "load", "state": "upstream_failed"}]
    assert full["what_broke"]["trace"].splitlines()[-1] == "ValueError: bad row in orders: id=42"
    [inv] = api.get(f"/api/v1/pipelines/{NS}/invoices_hourly/runs").json()["items"]
    tries = api.get(f"/api/v1/runs/{inv['run_id']}", params={"pipeline": f"{NS}/invoices_hourly"}).json()
    assert sorted(t["status"] for t in tries["tasks"]) == ["failed", "succeeded"]
    assert tries["what_broke"] is None


def test_team_and_schedule_come_from_the_dag(world):
    api, _ = world
    orders = api.get(f"/api/v1/pipelines/{NS}/orders_daily").json()
    assert orders["team"] == "orders-team"
    assert orders["schedule"]["source"] == "declared" and "00:00" in orders["schedule"]["description"], orders
    inv = api.get(f"/api/v1/pipelines/{NS}/invoices_hourly").json()
    assert inv["team"] == "billing-team" and ":15" in inv["schedule"]["description"], inv["schedule"]


def test_pipemon_show_names_what_broke_and_the_task_that_never_ran(world):
    _, server = world
    out = subprocess.run([sys.executable, "-m", "pipemon", "show", f"{NS}/orders_daily", "--url", server.url],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "transform failed: ValueError: bad row in orders: id=42" in out.stdout
    assert "upstream_failed" in out.stdout and "load" in out.stdout
