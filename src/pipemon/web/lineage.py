"""The lineage view: the dependency graph around a pipeline, or a team's, drawn as server-side SVG.

Nodes are coloured by state and carry it as text; a failing pipeline with no failing pipeline upstream
of it (among those drawn) is a root cause, outlined, and what it affects downstream is marked too.
The graph is the engine's (`pm.alerts.lineage`, what the JSON API's upstream/downstream read).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import Response
from markupsafe import Markup, escape

from pipemon.errors import BadRequest, NotFound
from pipemon.store import reads
from pipemon.web import queries
from pipemon.web.render import STATES, page, pipeline_url

DEPTH = 3
PER_LAYER = 18
TEAM_NODES = 80
NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 230, 34, 70, 12, 12
BAD = ("failing",)


@dataclass
class Graph:
    layers: dict[str, int]                       # node -> column
    states: dict[str, str]
    edges: set[tuple[str, str]] = field(default_factory=set)
    roots: list[str] = field(default_factory=list)
    affected: dict[str, set[str]] = field(default_factory=dict)  # root -> what it affects (drawn)
    hidden: int = 0                                # nodes left out to keep the picture readable


def build(lineage, layers: dict[str, int], states: dict[str, str]) -> Graph:
    g = Graph(layers, states)
    shown = set(layers)
    up: dict[str, set[str]] = {n: lineage.upstream(n) & shown for n in shown}
    for n, us in up.items():
        g.edges.update((u, n) for u in us)

    def reach(start: str, step: dict[str, set[str]]) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for m in step.get(todo.pop(), ()):
                if m not in seen and m != start:
                    seen.add(m)
                    todo.append(m)
        return seen

    down: dict[str, set[str]] = {n: set() for n in shown}
    for n, us in up.items():
        for u in us:
            down[u].add(n)
    for n in sorted(shown):
        if states.get(n) in BAD and not any(states.get(a) in BAD for a in reach(n, up)):
            g.roots.append(n)
            g.affected[n] = reach(n, down)
    return g


def svg(g: Graph, focus: str | None = None) -> Markup:
    cols: dict[int, list[str]] = {}
    for n, c in g.layers.items():
        cols.setdefault(c, []).append(n)
    rank = {s: i for i, s in enumerate(STATES)}
    for c in cols:
        cols[c].sort(key=lambda n: (n != focus, rank.get(g.states.get(n, "unknown"), 9), n))
    order = sorted(cols)
    pos: dict[str, tuple[float, float]] = {}
    for i, c in enumerate(order):
        for j, n in enumerate(cols[c]):
            pos[n] = (MARGIN + i * (NODE_W + GAP_X), MARGIN + j * (NODE_H + GAP_Y))
    width = MARGIN * 2 + len(order) * NODE_W + (len(order) - 1) * GAP_X
    height = MARGIN * 2 + max(len(v) for v in cols.values()) * (NODE_H + GAP_Y)
    affected = set().union(*g.affected.values()) if g.affected else set()
    hot = {(a, b) for a, b in g.edges if (a in g.roots or a in affected) and b in affected}
    parts = [f'<svg class="lineage" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="lineage graph">']
    for a, b in sorted(g.edges):
        (x1, y1), (x2, y2) = pos[a], pos[b]
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
        mid = (x1 + x2) / 2
        cls = "edge hot" if (a, b) in hot else "edge"
        parts.append(f'<path class="{cls}" d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} '
                     f'{x2:.0f},{y2:.0f}"/>')
    for n, (x, y) in pos.items():
        st = g.states.get(n, "unknown")
        classes = [f"node st-{st}"]
        tag = st.replace("_", " ")
        if n in g.roots:
            classes.append("root")
            tag = "ROOT CAUSE · " + tag
        elif n in affected:
            classes.append("affected")
            tag = "affected · " + tag
        if n == focus:
            classes.append("focus")
        label = n if len(n) <= 32 else "…" + n[-31:]
        parts.append(f'<a href="{escape(pipeline_url(n))}" class="{" ".join(classes)}" '
                     f'data-pipeline="{escape(n)}">'
                     f'<title>{escape(n)} — {escape(tag)}</title>'
                     f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="5"/>'
                     f'<text x="{x + 8:.0f}" y="{y + 14:.0f}" class="name">{escape(label)}</text>'
                     f'<text x="{x + 8:.0f}" y="{y + 28:.0f}" class="tag">{escape(tag)}</text></a>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _cap(layers: dict[str, int], states: dict[str, str], keep: str | None) -> tuple[dict[str, int], int]:
    """At most PER_LAYER nodes a column, the worst kept."""
    rank = {"failing": 0, "running_long": 1, "late": 2, "degraded": 3}
    cols: dict[int, list[str]] = {}
    for n, c in layers.items():
        cols.setdefault(c, []).append(n)
    out: dict[str, int] = {}
    hidden = 0
    for c, ns in cols.items():
        ns.sort(key=lambda n: (n != keep, rank.get(states.get(n, ""), 9), n))
        out.update((n, c) for n in ns[:PER_LAYER])
        hidden += max(0, len(ns) - PER_LAYER)
    return out, hidden


def pipeline_page(request: Request, key: str, scope: str | None = None) -> Response:
    """Around one of the caller's pipelines; its neighbours of other teams show their state only."""
    pm = request.app.state.pm
    lin = pm.alerts.lineage
    with pm.db.connect() as conn:
        row = reads.pipeline_row(conn, key, scope)
        layers = {row.key: 0}
        layers.update((n, -d) for n, d in lin.ancestors(row.key, DEPTH).items())
        layers.update((n, d) for n, d in lin.descendants(row.key, DEPTH).items() if n not in layers)
        states = queries.states_of(conn, list(layers))
    layers, hidden = _cap(layers, states, row.key)
    g = build(lin, layers, states)
    g.hidden = hidden
    return page(request, "lineage.html", title=f"lineage of {row.key}", focus=row.key, team=None, g=g,
                picture=svg(g, row.key))


def team_page(request: Request, team: str | None, scope: str | None = None) -> Response:
    if not team:
        raise BadRequest("choose a team: /lineage?team=NAME, or open a pipeline's lineage from its page")
    pm = request.app.state.pm
    lin = pm.alerts.lineage
    with pm.db.connect() as conn:
        own = queries.team_keys(conn, team, TEAM_NODES, scope)
        if not own:
            raise NotFound(f"no pipelines of team {team!r}")
        nodes = set(own)
        for n in own:  # one step out: where the team's inputs come from and whom it feeds
            nodes |= lin.upstream(n) | lin.downstream(n)
        states = queries.states_of(conn, sorted(nodes))
    layers = _layer(lin, nodes)
    layers, hidden = _cap(layers, states, None)
    g = build(lin, layers, states)
    g.hidden = hidden
    return page(request, "lineage.html", title=f"lineage of team {team}", focus=None, team=team, g=g,
                picture=svg(g))


def _layer(lin, nodes: set[str]) -> dict[str, int]:
    """Longest-path layering of the drawn subgraph (bounded passes: a cycle cannot loop forever)."""
    up = {n: lin.upstream(n) & nodes for n in nodes}
    layer = dict.fromkeys(nodes, 0)
    for _ in range(12):
        changed = False
        for n in nodes:
            want = max((layer[u] + 1 for u in up[n]), default=0)
            if want > layer[n] and want < 12:
                layer[n] = want
                changed = True
        if not changed:
            break
    return layer
