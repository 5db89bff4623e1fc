"""The routing tree: which receivers an alert goes to, grouped how, on what timers.

Alertmanager's semantics: the root matches everything; children are tried in order and the first that
matches takes the alert (and its own children are tried in turn) unless it says `continue: true`, in
which case the next siblings are tried too; a node none of whose children match handles the alert
itself. Unset timers and group_by are inherited from the parent.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipemon.config import Route
from pipemon.engine.matchers import Matcher, Op, match_all

DEFAULT_GROUP_BY = ("team", "pipeline")
DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0       # the shortest time between repeats
DEFAULT_MAX_REPEAT_INTERVAL = 24 * 3600.0  # the longest, when the pipeline's schedule says to wait longer


@dataclass(frozen=True)
class RouteNode:
    id: str                       # "root", "root.0", "root.0.1": stable while the config is
    receiver: str | None
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]     # ("...",) groups by every label: one alert per group
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool
    escalation: str | None
    page_after_failures: int | None
    max_repeat_interval: float = DEFAULT_MAX_REPEAT_INTERVAL
    children: tuple[RouteNode, ...] = ()

    def repeat_after(self, cadence: float | None) -> float:
        """How long after the last notification a group still firing is repeated: once an interval of the
        pipeline's schedule (`cadence`, the shortest among the group's), within [repeat_interval,
        max_repeat_interval]; repeat_interval when no schedule is known. A reminder sooner than the next
        run could change anything only teaches people to ignore reminders."""
        if cadence is None:
            return self.repeat_interval
        return max(self.repeat_interval, min(cadence, self.max_repeat_interval))

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if self.group_by == ("...",):
            return dict(labels)
        return {k: labels.get(k, "") for k in self.group_by}


def compile_routes(route: Route, team_routes: Sequence[tuple[str, Route]] = ()) -> RouteNode:
    """The main file's tree; the team files' routes (already confined to their teams) go first under the
    root, with ids by team name, so adding or removing one team leaves the other nodes' ids as they were
    (aggregation groups are keyed by node id)."""
    root = _compile(route, None, "root")
    if not team_routes:
        return root
    teams = tuple(_compile(r, root, f"root.team[{team}]") for team, r in team_routes)
    return RouteNode(**{**root.__dict__, "children": teams + root.children})


def _compile(r: Route, parent: RouteNode | None, rid: str) -> RouteNode:
    def pick(mine, inherited, default):
        return mine if mine is not None else (inherited if parent is not None else default)

    node = RouteNode(
        id=rid,
        receiver=r.receiver if r.receiver is not None else (parent.receiver if parent else None),
        matchers=r.matchers,
        group_by=(tuple(r.group_by) if r.group_by is not None
                  else (parent.group_by if parent else DEFAULT_GROUP_BY)),
        group_wait=pick(r.group_wait, parent and parent.group_wait, DEFAULT_GROUP_WAIT),
        group_interval=pick(r.group_interval, parent and parent.group_interval, DEFAULT_GROUP_INTERVAL),
        repeat_interval=pick(r.repeat_interval, parent and parent.repeat_interval, DEFAULT_REPEAT_INTERVAL),
        max_repeat_interval=pick(r.max_repeat_interval, parent and parent.max_repeat_interval,
                                 DEFAULT_MAX_REPEAT_INTERVAL),
        continue_=r.continue_,
        escalation=r.escalation if r.escalation is not None else (parent.escalation if parent else None),
        page_after_failures=(r.page_after_failures if r.page_after_failures is not None
                             else (parent.page_after_failures if parent else None)),
    )
    children = tuple(_compile(c, node, f"{rid}.{i}") for i, c in enumerate(r.routes))
    return RouteNode(**{**node.__dict__, "children": children})


def routes_for(root: RouteNode, labels: Mapping[str, str]) -> list[RouteNode]:
    """The nodes that handle an alert with these labels, in tree order."""
    return _match(root, labels)


def _match(node: RouteNode, labels: Mapping[str, str]) -> list[RouteNode]:
    out: list[RouteNode] = []
    for child in node.children:
        if match_all(child.matchers, labels):
            out += _match(child, labels)
            if not child.continue_:
                break
    return out or [node]


def receiver_teams(root: RouteNode) -> dict[str, str | None]:
    """receiver -> the one team whose alerts alone reach it: every route naming the receiver is confined
    (by a `team="T"` matcher on it or above it) to the same T. None: an organisation's receiver (the root's,
    or one that several teams' routes share), which only org-wide callers may test."""
    seen: dict[str, set[str | None]] = {}

    def walk(node: RouteNode, team: str | None) -> None:
        own = next((m.value for m in node.matchers if m.name == "team" and m.op is Op.EQ), None)
        team = own or team
        if node.receiver is not None:
            seen.setdefault(node.receiver, set()).add(team)
        for child in node.children:
            walk(child, team)

    walk(root, None)
    return {r: (next(iter(ts)) if len(ts) == 1 else None) for r, ts in seen.items()}
