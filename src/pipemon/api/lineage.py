"""`GET /api/v1/pipelines/{id}/lineage`: the dependency graph around a pipeline, each node with its owner
and state, redacted by `pipemon.visibility` (one rule): the caller's own pipelines in full, another team's
pipelines upstream or downstream of the caller's own at neighbour level (state, reason without error
text, schedule, owner, last-run time), anything else left out. A pipeline the caller may not see at all
answers 404, as one that does not exist. The graph is the engine's (`pm.alerts.lineage`), as the
dashboard's lineage page draws it."""
from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import msgspec
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request

from pipemon import visibility
from pipemon.access import UNOWNED, Action, Caller
from pipemon.api import auth
from pipemon.engine.health import reason_now
from pipemon.errors import NotFound
from pipemon.ingest.common import iso
from pipemon.store.schema import pipeline_state, pipelines

router = APIRouter(tags=["pipelines"])
MAX_DEPTH = 5


@router.get("/api/v1/pipelines/{pipeline_id:path}/lineage",
            openapi_extra={"x-pipemon-action": Action.READ.value},
            summary="The graph around a pipeline: upstream and downstream, each node's owner and state "
                    "(another team's pipelines redacted to state, reason, schedule, owner, last run)")
def get_lineage(request: Request, pipeline_id: str,
                depth: Annotated[int, Query(ge=1, le=MAX_DEPTH, description="hops each way")] = 2,
                who: Caller = Depends(auth.require(Action.READ))) -> dict[str, Any]:
    pm = request.app.state.pm
    lin = pm.alerts.lineage
    recs = pm.writer.pipelines

    def team_of(key: str) -> str:
        rec = recs.get(key)
        return (rec.team if rec is not None else None) or UNOWNED

    def level(key: str) -> visibility.Level:
        return visibility.level(who, team_of(key), visibility.related_teams(
            key, lin.ancestors, lin.descendants, team_of) if not who.sees(team_of(key)) else ())

    if pipeline_id not in recs or level(pipeline_id) is visibility.Level.NONE:
        raise NotFound(f"no pipeline {pipeline_id!r}")
    up = lin.ancestors(pipeline_id, depth)
    down = lin.descendants(pipeline_id, depth)
    hops = {pipeline_id: 0, **{k: -d for k, d in up.items()},
            **{k: d for k, d in down.items() if k not in up}}
    levels = {k: level(k) for k in hops}
    shown = [k for k in hops if levels[k] is not visibility.Level.NONE]
    with pm.db.connect() as conn:
        rows = _rows(conn, shown)
    now = pm.clock.now()
    nodes = []
    for k in sorted(shown, key=lambda k: (hops[k], k)):
        shown_node = visibility.redact(_node(k, rows.get(k), team_of(k), now,
                                             full=levels[k] is visibility.Level.FULL), levels[k])
        assert shown_node is not None
        shown_node["hops"] = hops[k]
        nodes.append(shown_node)
    keep = set(shown)
    edges = sorted({(u, n) for n in keep for u in lin.upstream(n) if u in keep})
    return {"pipeline": pipeline_id, "depth": depth, "nodes": nodes,
            "edges": [{"from": u, "to": n} for u, n in edges], "hidden": len(hops) - len(shown)}


def _rows(conn, keys: list[str]) -> dict[str, sa.Row]:
    out: dict[str, sa.Row] = {}
    for i in range(0, len(keys), 500):
        for r in conn.execute(sa.select(pipelines.c.key, pipelines.c.namespace, pipelines.c.name,
                                        pipeline_state.c.state, pipeline_state.c.reason,
                                        pipeline_state.c.state_since, pipeline_state.c.view).select_from(
                pipelines.outerjoin(pipeline_state, pipeline_state.c.pipeline_id == pipelines.c.id))
                .where(pipelines.c.key.in_(keys[i:i + 500]))):
            out[r.key] = r
    return out


def _node(key: str, row, team: str, now: float, full: bool) -> dict[str, Any]:
    view = msgspec.json.decode(row.view) if row is not None and row.view else {}
    state = (row.state if row is not None else None) or "unknown"
    last = view.get("last_run") or {}
    ended = last.get("ended_at") or last.get("started_at")
    stored = reason_now((row.reason if row is not None else None) or "no finished run yet",
                        view.get("overdue_since"), now)
    sched = view.get("schedule")
    if sched:
        sched = {**sched, "next_expected": _ts(sched.get("next_expected")),
                 "deadline": _ts(sched.get("deadline"))}
    node: dict[str, Any] = {
        "id": key, "namespace": row.namespace if row is not None else key.rpartition("/")[0],
        "name": row.name if row is not None else key.rpartition("/")[2], "team": team, "state": state,
        "state_since": _ts(row.state_since) if row is not None else None, "schedule": sched,
        "last_run_at": _ts(ended)}
    if full:
        pid = quote(key, safe="")
        node.update({"reason": stored,
                     "last_run": {"run_id": last.get("run_id"), "status": last.get("status"),
                                  "ended_at": _ts(last.get("ended_at")), "error": last.get("error")}
                     if last else None,
                     "links": {"self": f"/api/v1/pipelines/{pid}", "runs": f"/api/v1/pipelines/{pid}/runs",
                               "page": f"/pipelines/{pid}"}})
    else:
        metrics = view.get("metrics") or {}
        node["reason"] = visibility.neighbour_reason(state, last.get("status"), _ts(ended),
                                                     metrics.get("consecutive_failures"), stored)
    return node


def _ts(v: float | None) -> str | None:
    return iso(v) if v is not None else None
