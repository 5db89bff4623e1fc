"""Who owns a pipeline (issue 11, item 1): one rule (pipemon.ownership.owner), applied when a pipeline is
created, when an event names a team, and to every existing pipeline when the config is loaded or reloaded."""
from __future__ import annotations

import pytest

from pipemon.app import build
from pipemon.config import loads
from pipemon.ownership import owner


@pytest.mark.parametrize("config_team,event_team,token_team,expected", [
    ("payments", "marketing", "ops", "payments"),   # the config wins
    (None, "marketing", "ops", "marketing"),        # then the producer's (OpenLineage facet or native team)
    (None, None, "ops", "ops"),                     # then the ingest token's team
    (None, None, None, "unowned"),
    ("", "", None, "unowned"),
])
def test_the_owner_rule(config_team, event_team, token_team, expected):
    assert owner(config_team, event_team, token_team) == expected


@pytest.fixture
def settings():
    return loads('pipelines:\n  - {match: "cfg/*", team: payments}\n')


def teams(client) -> dict[str, str]:
    return {p["id"]: p["team"] for p in client.get("/api/v1/pipelines").json()["items"]}


def test_owners_from_config_event_or_nobody_and_a_config_change_applies_to_existing_pipelines(
        pm, client, db_url, clock):
    r = client.post("/api/v1/events", json=[
        {"pipeline": "cfg/a", "run_id": "1", "type": "COMPLETE", "team": "marketing"},  # config wins
        {"pipeline": "evt/b", "run_id": "1", "type": "COMPLETE", "team": "marketing"},
        {"pipeline": "none/c", "run_id": "1", "type": "COMPLETE"}])
    assert r.status_code == 200, r.text
    assert teams(client) == {"cfg/a": "payments", "evt/b": "marketing", "none/c": "unowned"}
    listed = client.get("/api/v1/pipelines", params={"team": "unowned"}).json()["items"]
    assert [p["id"] for p in listed] == ["none/c"]   # what `pipemon status --team unowned` shows

    # a reload: cfg/* changes hands, none/* gets an owner
    pm.reconfigure(loads('pipelines:\n  - {match: "cfg/*", team: finance}\n'
                         '  - {match: "none/*", team: ops}\n'))
    assert teams(client) == {"cfg/a": "finance", "evt/b": "marketing", "none/c": "ops"}

    # a restart with yet another config: the owners follow it on load
    pm.close()
    again = build(db_url, loads(""), clock=clock)
    try:
        again.worker.tick()
        assert {k: r.team for k, r in again.worker.pipelines.items()} == {
            "cfg/a": "marketing", "evt/b": "marketing", "none/c": "unowned"}
    finally:
        again.close()
