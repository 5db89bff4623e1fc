"""The real openlineage-python client against a real `pipemon serve`: status, duration, rows, error, tasks,
lineage and owner come out right, and `pipemon status` shows them."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (error_message_run, job_type_job, output_statistics_output_dataset,
                                         ownership_job, parent_run)
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.uuid import generate_new_uuid

PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python"
T = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)


def ol_client(url: str, compression: str | None = None) -> OpenLineageClient:
    cfg = {"url": url, "auth": {"type": "api_key", "apiKey": "secret-token"}}
    if compression:
        cfg["compression"] = compression
    return OpenLineageClient(transport=HttpTransport(HttpConfig.from_dict(cfg)))


def event(state, at, run_id, job="sales_daily", ns="airflow://prod", run_facets=None, job_facets=None, **kw):
    return RunEvent(eventType=state, eventTime=at.isoformat(), run=Run(runId=str(run_id), facets=run_facets or {}),
                    job=Job(namespace=ns, name=job, facets=job_facets or {}), producer=PRODUCER, **kw)


def stats(rows, size):
    return {"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows,
                                                                                                    size=size)}


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_client_events_become_runs(live_server, compression):
    server = live_server()
    client = ol_client(server.url, compression)
    owner = {"ownership": ownership_job.OwnershipJobFacet(owners=[ownership_job.Owner(name="team:payments")]),
             "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="AIRFLOW", jobType="DAG")}
    ok, bad = generate_new_uuid(), generate_new_uuid()
    client.emit(event(RunState.START, T, ok, job_facets=owner,
                      inputs=[InputDataset(namespace="postgres://db", name="public.orders")]))
    client.emit(event(RunState.COMPLETE, T + timedelta(minutes=12), ok, job_facets=owner,
                      outputs=[OutputDataset(namespace="s3://lake", name="sales/daily", outputFacets=stats(12000, 4e6))]))
    client.emit(event(RunState.START, T + timedelta(days=1), bad))
    client.emit(event(RunState.FAIL, T + timedelta(days=1, minutes=3), bad, run_facets={
        "errorMessage": error_message_run.ErrorMessageRunFacet(message="relation orders does not exist",
                                                               programmingLanguage="SQL")}))
    # downstream pipeline of another team reading the output
    client.emit(event(RunState.COMPLETE, T + timedelta(hours=1), generate_new_uuid(), job="finance_report",
                      ns="dbt://finance", inputs=[InputDataset(namespace="s3://lake", name="sales/daily")]))

    pid = "airflow%3A%2F%2Fprod%2Fsales_daily"
    runs = httpx.get(f"{server.url}/api/v1/pipelines/{pid}/runs").json()["items"]
    failed, succeeded = runs
    assert (succeeded["run_id"], succeeded["status"], succeeded["duration_s"], succeeded["rows"], succeeded["bytes"]) \
        == (str(ok), "succeeded", 720.0, 12000, 4e6)
    assert (failed["status"], failed["duration_s"], failed["error"]) == \
        ("failed", 180.0, {"message": "relation orders does not exist", "type": "SQL"})
    detail = httpx.get(f"{server.url}/api/v1/pipelines/{pid}").json()
    assert (detail["team"], detail["integration"]) == ("payments", "AIRFLOW")
    assert detail["downstream"] == ["dbt://finance/finance_report"]
    assert detail["datasets"] == {"inputs": ["postgres://db/public.orders"], "outputs": ["s3://lake/sales/daily"]}

    out = subprocess.run([sys.executable, "-m", "pipemon", "status", "--url", server.url], capture_output=True,
                         text=True, timeout=30, env={"COLUMNS": "200", "PATH": ""})
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if "sales_daily" in ln)
    assert "payments" in line and "failed" in line and "relation orders does not exist" in line


def test_retried_events_are_stored_once(live_server):
    server = live_server()
    client = ol_client(server.url)
    rid = generate_new_uuid()
    for _ in range(3):  # what the client's retry on a timeout looks like from the server
        client.emit(event(RunState.START, T, rid))
    r = httpx.post(f"{server.url}/api/v1/lineage", content=_json(event(RunState.START, T, rid)),
                   headers={"Content-Type": "application/json"})
    assert r.json() == {"accepted": 0, "duplicates": 1}


def test_task_events_roll_up_into_the_dag_run(live_server):
    server = live_server()
    client = ol_client(server.url)
    dag_run = generate_new_uuid()
    parent = {"parent": parent_run.ParentRunFacet(run=parent_run.Run(runId=str(dag_run)),
                                                  job=parent_run.Job(namespace="airflow://prod", name="etl"))}
    extract, load = generate_new_uuid(), generate_new_uuid()
    # tasks first (the DAG's own events come later or never)
    client.emit(event(RunState.START, T, extract, job="etl.extract", run_facets=parent))
    client.emit(event(RunState.COMPLETE, T + timedelta(minutes=5), extract, job="etl.extract", run_facets=parent,
                      outputs=[OutputDataset(namespace="s3://x", name="raw", outputFacets=stats(100, 1))]))
    client.emit(event(RunState.START, T + timedelta(minutes=6), load, job="etl.load", run_facets=parent))
    client.emit(event(RunState.FAIL, T + timedelta(minutes=9), load, job="etl.load", run_facets={
        **parent, "errorMessage": error_message_run.ErrorMessageRunFacet(message="disk full", programmingLanguage="python")}))
    run = httpx.get(f"{server.url}/api/v1/runs/{dag_run}").json()
    assert run["pipeline"] == "airflow://prod/etl"
    # the DAG run is pending until its own events arrive (issue 17): what broke is known, not its outcome
    assert (run["status"], run["pending"], run["duration_s"]) == ("running", True, None)
    assert run["what_broke"]["headline"] == "load failed: disk full"
    assert [t["job"] for t in run["tasks"]] == ["airflow://prod/etl.extract", "airflow://prod/etl.load"]
    assert run["failed_tasks"] == ["airflow://prod/etl.load"]
    # the tasks are not pipelines of their own
    ids = [p["id"] for p in httpx.get(f"{server.url}/api/v1/pipelines").json()["items"]]
    assert ids == ["airflow://prod/etl"]
    # the DAG's own COMPLETE (say, after a task retry) takes over
    client.emit(event(RunState.COMPLETE, T + timedelta(minutes=20), dag_run, job="etl"))
    client.emit(event(RunState.START, T - timedelta(seconds=1), dag_run, job="etl"))
    run = httpx.get(f"{server.url}/api/v1/runs/{dag_run}").json()
    assert (run["status"], run["duration_s"]) == ("succeeded", 1201.0)


def _json(ev) -> bytes:
    from openlineage.client.serde import Serde
    return Serde.to_json(ev).encode()
