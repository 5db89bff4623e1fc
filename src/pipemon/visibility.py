"""How much of another team's pipeline a caller may see (pure: the one rule, for every view that shows
pipelines across teams: the lineage API, notices, pages).

    FULL       the caller's own team (or an org-wide caller): everything
    NEIGHBOUR  another team's pipeline upstream or downstream (any hops) of one of the caller's own:
               its state, a reason without error text or figures, its schedule, owner and last-run time;
               never its error text, logs, runs or metrics
    NONE       anything else: as if it did not exist (the API answers 404)
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pipemon.access import Caller


class Level(enum.Enum):
    NONE = 0
    NEIGHBOUR = 1
    FULL = 2


# What a neighbour node carries; everything else is left out.
NEIGHBOUR_FIELDS = ("id", "namespace", "name", "team", "state", "reason", "state_since", "schedule",
                    "last_run_at")


def level(caller: Caller, owner: str, related_teams: Iterable[str]) -> Level:
    """`related_teams`: the owners of every pipeline upstream or downstream of this one."""
    if caller.sees(owner):
        return Level.FULL
    if caller.team is not None and caller.team in set(related_teams):
        return Level.NEIGHBOUR
    return Level.NONE


def neighbour_reason(state: str, last_status: str | None, last_ended: str | None,
                     consecutive_failures: int | None, stored_reason: str) -> str:
    """A reason another team may read: what state and since when, never the error text, a log, a silence's
    comment or a metric's figures (a stored failing reason quotes the error; a degraded one, figures)."""
    if state == "failing":
        streak = f" ({consecutive_failures} consecutive failures)" if (consecutive_failures or 0) > 1 else ""
        when = f" at {last_ended}" if last_ended else ""
        return f"last run {last_status or 'failed'}{when}{streak}"
    if state == "late":
        return stored_reason  # about its schedule: the slot it owes and its last success
    return {"degraded": "its recent runs look unusual (anomaly)",
            "running_long": "a run is taking longer than usual",
            "paused": "paused (silenced or in a maintenance window)",
            "healthy": "last run succeeded"}.get(state, stored_reason if state == "unknown" else state)


def redact(node: Mapping[str, Any], lvl: Level) -> dict[str, Any] | None:
    """A node as this level may see it (None: not at all)."""
    if lvl is Level.FULL:
        return dict(node)
    if lvl is Level.NONE:
        return None
    return {k: node.get(k) for k in NEIGHBOUR_FIELDS} | {"visibility": "neighbour"}


def related_teams(pipeline: str, ancestors: Callable[[str], Iterable[str]],
                  descendants: Callable[[str], Iterable[str]], team_of: Callable[[str], str]) -> set[str]:
    """The owners of everything upstream and downstream of `pipeline` (its neighbours, any hops)."""
    return {team_of(p) for p in (*ancestors(pipeline), *descendants(pipeline))}
