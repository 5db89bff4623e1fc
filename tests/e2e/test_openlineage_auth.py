"""The real openlineage-python client, configured with `auth: {type: api_key, apiKey: …}`, against a real
`pipemon serve` with auth on: a team's ingest token is accepted; another team's token, a wrong one or none
is refused, and nothing of a refused event is stored."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import ownership_job
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.uuid import generate_new_uuid
from typer.testing import CliRunner

from pipemon.cli import app as cli

PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python"
T = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)


def ol_client(url: str, key: str | None) -> OpenLineageClient:
    cfg: dict = {"url": url}
    if key is not None:
        cfg["auth"] = {"type": "api_key", "apiKey": key}
    return OpenLineageClient(transport=HttpTransport(HttpConfig.from_dict(cfg)))


def event(state, at, run_id, job, team=None):
    owner = ownership_job.Owner(name=f"team:{team}")
    facets = {"ownership": ownership_job.OwnershipJobFacet(owners=[owner])} if team else {}
    return RunEvent(eventType=state, eventTime=at.isoformat(), run=Run(runId=str(run_id)),
                    job=Job(namespace="airflow://prod", name=job, facets=facets), producer=PRODUCER)


def token(db: str, *args: str) -> str:
    r = CliRunner().invoke(cli, ["token", "create", *args, "--db", db])
    assert r.exit_code == 0, r.output
    return r.stdout.strip().splitlines()[-1]


def test_team_ingest_token_is_accepted_and_others_refused(db_url, live_server):
    root = token(db_url, "--org-admin", "--name", "root")
    payments = token(db_url, "--team", "payments", "--role", "ingest", "--name", "payments-airflow")
    marketing = token(db_url, "--team", "marketing", "--role", "ingest", "--name", "marketing-airflow")
    server = live_server()
    assert "auth: on" in server.logs()
    admin = {"Authorization": f"Bearer {root}"}

    def stored() -> tuple[list[str], int]:
        items = httpx.get(f"{server.url}/api/v1/pipelines", headers=admin).json()["items"]
        runs = sum(len(httpx.get(f"{server.url}/api/v1/pipelines/{p['id'].replace('/', '%2F')}/runs",
                                 headers=admin).json()["items"]) for p in items)
        return sorted(p["id"] for p in items), runs

    ok = generate_new_uuid()
    client = ol_client(server.url, payments)
    client.emit(event(RunState.START, T, ok, "settle", team="payments"))
    client.emit(event(RunState.COMPLETE, T + timedelta(minutes=5), ok, "settle", team="payments"))
    client.emit(event(RunState.COMPLETE, T, generate_new_uuid(), "reconcile"))  # no owner named: the token's
    detail = httpx.get(f"{server.url}/api/v1/pipelines/airflow%3A%2F%2Fprod%2Freconcile", headers=admin)
    assert detail.json()["team"] == "payments"
    before = stored()
    assert before == (["airflow://prod/reconcile", "airflow://prod/settle"], 2)

    refusals = [
        (marketing, event(RunState.START, T + timedelta(hours=1), generate_new_uuid(), "settle"), 403),
        (marketing, event(RunState.START, T, generate_new_uuid(), "new_job", team="payments"), 403),
        ("pm_not-a-real-token", event(RunState.START, T, generate_new_uuid(), "mkt_job"), 401),
        (None, event(RunState.START, T, generate_new_uuid(), "mkt_job"), 401),
    ]
    for key, ev, status in refusals:
        with pytest.raises(requests.HTTPError) as err:
            ol_client(server.url, key).emit(ev)
        assert err.value.response.status_code == status
        assert err.value.response.json()["error"] in ("forbidden", "unauthorized")
    assert stored() == before  # nothing of a refused event is stored
    # marketing's own pipeline goes in with marketing's token
    ol_client(server.url, marketing).emit(event(RunState.COMPLETE, T, generate_new_uuid(), "campaigns"))
    assert httpx.get(f"{server.url}/api/v1/pipelines/airflow%3A%2F%2Fprod%2Fcampaigns",
                     headers=admin).json()["team"] == "marketing"
