"""Who may do what: roles, the caller of a request, and the one table of rights (pure, no I/O).

Every request has a Caller: the holder of a token (its name, team and role), or ANONYMOUS (an org-wide
admin) while auth is off (`pipemon serve --auth off`, or `auto` on loopback before any token exists).
Reads and writes are scoped by `Caller.team` in the query itself (None: the whole organisation); the
actor recorded on a change is `Caller.name`, never a name the client supplies.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    INGEST = "ingest"        # a pipeline's OpenLineage client, SDK or cron job: writes its team's events
    VIEWER = "viewer"        # reads its team's pipelines, runs, alerts
    OPERATOR = "operator"    # reads, and acknowledges, resolves, silences, gives feedback
    ADMIN = "admin"          # also manages its team's tokens and config
    ORG_ADMIN = "org-admin"  # everything, every team
    METRICS = "metrics"      # scrapes /metrics only


class Action(enum.StrEnum):
    INGEST = "ingest"      # post events, pings
    READ = "read"          # every GET of the API and the dashboard
    OPERATE = "operate"    # acknowledge, resolve, silence, feedback, test a receiver
    ADMIN = "admin"        # the team's tokens, the team's audit log
    ORG = "org"            # config reload, org-admin tokens, the whole audit log
    SCRAPE = "scrape"      # /metrics


RIGHTS: dict[Role, frozenset[Action]] = {
    Role.INGEST: frozenset({Action.INGEST}),
    Role.VIEWER: frozenset({Action.READ}),
    Role.OPERATOR: frozenset({Action.READ, Action.OPERATE}),
    Role.ADMIN: frozenset({Action.READ, Action.OPERATE, Action.ADMIN}),
    Role.ORG_ADMIN: frozenset(Action),
    Role.METRICS: frozenset({Action.SCRAPE}),
}

UNOWNED = "unowned"  # the team of a pipeline nobody claimed; visible to org admins


@dataclass(frozen=True, slots=True)
class Caller:
    name: str                # the token's name: the actor on every change it makes
    role: Role
    team: str | None = None  # None: org-wide (org-admin, metrics, anonymous)
    token_id: int | None = None
    address: str | None = None  # the client's address, for the audit log

    @property
    def org_wide(self) -> bool:
        return self.team is None

    def can(self, action: Action) -> bool:
        return action in RIGHTS[self.role]

    def sees(self, team: str | None) -> bool:
        """May this caller see (all of) a record owned by `team`?"""
        return self.team is None or team == self.team

    def scope(self) -> str | None:
        """The team to put in a query's WHERE clause; None means no team filter (org-wide)."""
        return self.team


ANONYMOUS = Caller(name="anonymous", role=Role.ORG_ADMIN)
