"""Who owns a pipeline (issue 11, item 1): one rule (pipemon.ownership.owner), applied when a pipeline is
created, when an event names a team, and to every existing pipeline when the config is loaded or reloaded."""
from __future__ import annotations

import pytest

from pipemon.app import build
from pipemon.config import loads
from pipemon.ownership import owner


@pytest.mark.parametrize("config_team,team_file,event_team,token_team,expected", [
    ("payments", False, "marketing", "ops", "payments"),   # the main file wins
    (None, False, "marketing", "ops", "marketing"),        # then the producer's (OpenLineage facet, native)
    (None, False, None, "ops", "ops"),                     # then the ingest token's team
    (None, False, None, None, "unowned"),
    ("", False, "", None, "unowned"),
    ("payments", True, None, "ops", "payments"),           # a team's file claims what nobody else says
    ("payments", True, "payments", None, "payments"),
    ("payments", True, "marketing", None, "marketing"),    # but not what a producer says is another's
])
def test_the_owner_rule(config_team, team_file, event_team, token_team, expected):
    assert owner(config_team, team_file, event_team, token_team) == expected


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
        again.writer.tick()
        assert {k: r.team for k, r in again.writer.pipelines.items()} == {
            "cfg/a": "marketing", "evt/b": "marketing", "none/c": "unowned"}
    finally:
        again.close()


def test_a_team_file_cannot_take_another_teams_pipeline(pm, client):
    from pipemon.teamconfig import combine, parse_team
    main = loads("")
    greedy = parse_team('pipelines:\n  - {match: "*", tier: 1}\n', "payments.yaml", main)
    r = client.post("/api/v1/events", json=[
        {"pipeline": "mkt/a", "run_id": "1", "type": "COMPLETE", "team": "marketing"},
        {"pipeline": "loose/b", "run_id": "1", "type": "COMPLETE"}])
    assert r.status_code == 200, r.text
    pm.reconfigure(combine(main, [greedy], {}).settings)
    assert teams(client) == {"mkt/a": "marketing", "loose/b": "payments"}
