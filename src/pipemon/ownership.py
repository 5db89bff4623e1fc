"""Who owns a pipeline: the one rule, used wherever a pipeline is created, an event names a team, or the
configuration is (re)loaded."""
from __future__ import annotations

from pipemon.access import UNOWNED


def owner(config_team: str | None, team_file: bool, event_team: str | None,
          token_team: str | None = None) -> str:
    """In order: the config's `pipelines[].team`; the team the producer names (the OpenLineage `ownership`
    job facet, or the native event's `team`: an event carries one of the two); the team of the ingest
    token that created the pipeline; else UNOWNED (visible to org admins; `pipemon status --team unowned`).

    `team_file`: the config's team comes from a team's own file (config.d/), which may claim only pipelines
    that no producer says belong to another team; the main file decides over everything."""
    if config_team and not (team_file and event_team and event_team != config_team):
        return config_team
    return event_team or token_team or UNOWNED
