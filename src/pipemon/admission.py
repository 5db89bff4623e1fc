"""Which ingest requests the writer takes, decided inside its transaction, where every pipeline's owner
is known:

  - an ingest token of team T writes only pipelines whose owner is, and stays, T: a new pipeline is T's
    unless the config or the event names another owner; an unowned one (made before auth was on, or by
    an org-wide token) is adopted by T; another team's pipeline is a 403 naming the pipeline;
  - a token creates at most `limits.new_pipelines_per_minute` new pipelines a minute (a token bucket with
    a minute's worth of burst): over it, a 429 with Retry-After.
A refused request is refused whole (nothing of it is stored); its neighbours in the group go on.
Org-wide callers (org-admin tokens, and everyone while auth is off) skip the ownership check.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pipemon.access import UNOWNED, Caller
from pipemon.config import Settings
from pipemon.errors import Forbidden, PipemonError, TooMany
from pipemon.model import Event, pipeline_key
from pipemon.ownership import owner


@dataclass
class Quota:
    """Token buckets, one per API token: `per_minute` new pipelines a minute after a burst of as many.
    Pure: the time (monotonic seconds) is passed in."""

    per_minute: int
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)  # token id -> (left, at)

    def take(self, token_id: int, n: int, now: float) -> float:
        """Take n and return 0, or take nothing and return the seconds until n are there."""
        rate = self.per_minute / 60.0
        left, at = self._buckets.get(token_id, (float(self.per_minute), now))
        left = min(float(self.per_minute), left + (now - at) * rate)
        if n <= left:
            self._buckets[token_id] = (left - n, now)
            return 0.0
        self._buckets[token_id] = (left, now)
        if n > self.per_minute:  # more than a minute's worth never fits: the client must split it
            return 60.0
        return (n - left) / rate

    def refund(self, taken: dict[int, int]) -> None:
        """Give back what a transaction took and then rolled back."""
        for token_id, n in taken.items():
            left, at = self._buckets.get(token_id, (0.0, 0.0))
            self._buckets[token_id] = (min(float(self.per_minute), left + n), at)


@dataclass(frozen=True)
class Owned:
    """What the writer keeps of a pipeline for this decision."""

    team: str | None
    event_team: str | None


@dataclass
class Admitted:
    refused: dict[int, PipemonError] = field(default_factory=dict)  # request index -> its answer
    claims: dict[str, Caller] = field(default_factory=dict)  # pipeline key -> the token whose team owns it
    taken: dict[int, int] = field(default_factory=dict)  # token id -> new pipelines counted (for a refund)


def owners(known: Owned | None, config: tuple[str | None, bool], said: str | None,
           token_team: str | None) -> tuple[str | None, str | None]:
    """(owner before, owner after) an event that names `said` as its team (None: names none), by the one
    ownership rule (ownership.owner); an unowned pipeline has no owner before and may be adopted."""
    before = None if known is None or known.team in (None, UNOWNED) else known.team
    event_team = said or (known.event_team if known is not None else None)
    after = owner(*config, event_team, token_team)
    return before, (None if after == UNOWNED else after)


def admit(requests: list[list[Event]], callers: list[Caller | None], settings: Settings,
          lookup: Callable[[str], Owned | None], task_root: Callable[[str], str | None], quota: Quota,
          mono_now: float, into: Admitted | None = None) -> Admitted:
    """Decide each request in order (an earlier request of the group may create a pipeline a later one
    writes). `lookup(key)`: a stored pipeline's owner; `task_root(parent_run_id)`: the pipeline key a
    stored parent run belongs to, if any."""
    out = Admitted() if into is None else into
    planned: dict[str, Owned] = {}  # pipelines this group creates, with their owner
    for i, (events, who) in enumerate(zip(requests, callers)):
        if who is None or (who.team is None and who.token_id is None):
            continue  # auth off: nothing to check, nobody to count
        mine: dict[str, Owned] = {}
        new = 0
        refusal: PipemonError | None = None
        for ev in events:
            if ev.parent is None:
                key, said = ev.pipeline, ev.team
            else:
                top = ev.root or ev.parent
                key = task_root(ev.parent.run_id) or pipeline_key(top.namespace, top.name)
                said = ev.root_team
            known = mine.get(key) or planned.get(key) or lookup(key)
            config = settings.config_owner(key)
            before, after = owners(known, config, said, who.team)
            if who.team is not None and (before not in (None, who.team) or after != who.team):
                why = ("belongs to another team" if before not in (None, who.team) else
                       f"would belong to team {after!r} (named by the event or the config)")
                refusal = Forbidden(f"pipeline {key!r} {why}: the token {who.name!r} of team "
                                    f"{who.team!r} may write its own team's pipelines only")
                break
            if known is None:
                new += 1
            if who.team is not None and after == who.team and before is None and \
                    not config[0] and not said:
                out.claims.setdefault(key, who)
            mine[key] = Owned(after, said or (known.event_team if known else None))
        if refusal is None and new and who.token_id is not None:
            wait = quota.take(who.token_id, new, mono_now)
            if wait == 0:
                out.taken[who.token_id] = out.taken.get(who.token_id, 0) + new
            else:
                over = (f"it would create {new} new pipelines, more than the {quota.per_minute} a minute "
                        "a token may" if new > quota.per_minute else
                        f"its {new} new pipelines would pass the limit of {quota.per_minute} a minute")
                refusal = TooMany(f"token {who.name!r}: {over} (limits.new_pipelines_per_minute)", wait)
        if refusal is not None:
            out.refused[i] = refusal
            for key in mine:
                if out.claims.get(key) is who:
                    del out.claims[key]
            continue
        planned.update(mine)
    return out
