"""Lineage visibility (issue 11, item 5): GET /api/v1/pipelines/{id}/lineage shows each node's owner and
state; another team's pipeline upstream or downstream of the caller's own is redacted to state, reason,
schedule, owner and last-run time (never its error text, logs or runs); anything else is left out, and a
pipeline the caller may not see at all is a 404."""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from pipemon.api.app import create_app
from pipemon.config import loads
from pipemon.visibility import NEIGHBOUR_FIELDS

ERROR = "FATAL: password authentication failed for user etl_loader on db-7.internal"
LOG = "Traceback: /opt/alpha/secret_job.py line 42"

CONFIG = """
pipelines:
  - {match: "up/extract", team: alpha, schedule: "0 2 * * *"}
  - {match: "mid/transform", team: beta, depends_on: ["up/extract"]}
  - {match: "down/report", team: beta, depends_on: ["mid/transform"]}
  - {match: "side/alpha_only", team: gamma, depends_on: ["up/extract"]}
  - {match: "other/x", team: gamma}
"""


@pytest.fixture
def settings():
    return loads(CONFIG)


@pytest.fixture
def api(pm, clock, as_team):
    app = create_app(pm)
    headers = as_team(app)
    with TestClient(app, raise_server_exceptions=False) as c:
        t = clock.now()
        r = c.post("/api/v1/events", headers=headers("org-admin"), json=[
            {"pipeline": "up/extract", "run_id": "u1", "type": "START", "event_time": t - 120},
            {"pipeline": "up/extract", "run_id": "u1", "type": "FAIL", "event_time": t - 60,
             "error": {"message": ERROR, "type": "OperationalError"}, "log": LOG},
            {"pipeline": "mid/transform", "run_id": "m1", "type": "COMPLETE", "event_time": t - 30},
            {"pipeline": "other/x", "run_id": "x1", "type": "FAIL", "event_time": t - 30,
             "error": {"message": ERROR, "type": "OperationalError"}}])
        assert r.status_code == 200, r.text
        pm.writer.tick()
        yield c, headers


def lineage(c, headers, who: str, pipeline: str, **params):
    return c.get(f"/api/v1/pipelines/{quote(pipeline, safe='')}/lineage", headers=headers(who), params=params)


def test_team_b_sees_upstream_team_a_state_and_owner_not_its_error_runs_or_logs(api):
    c, headers = api
    r = lineage(c, headers, "beta-viewer", "mid/transform")
    assert r.status_code == 200, r.text
    assert ERROR not in r.text and "password" not in r.text and LOG not in r.text and "u1" not in r.text
    nodes = {n["id"]: n for n in r.json()["nodes"]}
    up = nodes["up/extract"]
    assert (up["team"], up["state"], up["visibility"], up["hops"]) == ("alpha", "failing", "neighbour", -1)
    assert up["reason"].startswith("last run failed at ") and up["last_run_at"] is not None
    assert up["schedule"]["source"] == "declared"
    assert set(up) == {*NEIGHBOUR_FIELDS, "visibility", "hops"}       # no links, no last run, no metrics
    own = nodes["mid/transform"]
    assert own["team"] == "beta" and own["state"] == "healthy" and own["links"]["runs"].endswith("/runs")
    assert nodes["down/report"]["hops"] == 1 and "links" in nodes["down/report"]
    # gamma's pipeline beside alpha's is nobody beta depends on: left out, counted
    assert "side/alpha_only" not in nodes
    assert {(e["from"], e["to"]) for e in r.json()["edges"]} == {("up/extract", "mid/transform"),
                                                                ("mid/transform", "down/report")}
    # centred on the upstream itself: still redacted, and gamma's node still left out
    r = lineage(c, headers, "beta-viewer", "up/extract")
    assert r.status_code == 200 and ERROR not in r.text
    assert r.json()["hidden"] == 1 and {n["id"] for n in r.json()["nodes"]} == {
        "up/extract", "mid/transform", "down/report"}


def test_the_owner_and_org_admins_see_everything(api):
    c, headers = api
    mine = {n["id"]: n for n in lineage(c, headers, "alpha-viewer", "up/extract").json()["nodes"]}
    assert mine["up/extract"]["last_run"]["error"] == ERROR and ERROR in mine["up/extract"]["reason"]
    assert mine["mid/transform"]["visibility"] == "neighbour" and "links" not in mine["mid/transform"]
    org = lineage(c, headers, "org-admin", "up/extract", depth=5).json()
    assert {n["id"] for n in org["nodes"]} == {"up/extract", "mid/transform", "down/report",
                                               "side/alpha_only"}
    assert all("links" in n for n in org["nodes"]) and org["hidden"] == 0


def test_a_pipeline_the_caller_may_not_see_is_a_404_like_one_that_does_not_exist(api):
    c, headers = api
    hidden = lineage(c, headers, "beta-viewer", "other/x")
    missing = lineage(c, headers, "beta-viewer", "no/such")
    assert hidden.status_code == missing.status_code == 404
    assert ERROR not in hidden.text and hidden.json()["error"] == missing.json()["error"] == "not_found"
    assert lineage(c, headers, "gamma-viewer", "mid/transform").status_code == 404  # gamma: only alpha's side


@pytest.mark.parametrize("depth", ["0", "6", "two"])
def test_a_bad_depth_is_a_clear_422(api, depth):
    c, headers = api
    r = lineage(c, headers, "beta-viewer", "mid/transform", depth=depth)
    assert r.status_code == 422 and r.json()["problems"][0]["loc"].endswith("depth")
    assert json.dumps(r.json()).count("Traceback") == 0


def test_the_route_declares_its_action(api):
    c, _ = api
    op = c.get("/openapi.json").json()["paths"]["/api/v1/pipelines/{pipeline_id}/lineage"]["get"]
    assert op["x-pipemon-action"] == "read"
    doc = c.get("/openapi.json").json()
    assert doc["paths"]["/api/v1/config/reload"]["post"]["x-pipemon-action"] == "org"
