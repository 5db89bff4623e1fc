"""Who owns a pipeline: the one rule, used wherever a pipeline is created, an event names a team, or the
configuration is (re)loaded."""
from __future__ import annotations

from pipemon.access import UNOWNED


def owner(config_team: str | None, event_team: str | None, token_team: str | None = None) -> str:
    """In order: the config's `pipelines[].team`; the team the producer names (the OpenLineage `ownership`
    job facet, or the native event's `team`: an event carries one of the two); the team of the ingest
    token that created the pipeline; else UNOWNED (visible to org admins; `pipemon status --team unowned`)."""
    return config_team or event_team or token_team or UNOWNED
