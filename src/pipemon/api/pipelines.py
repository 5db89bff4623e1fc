"""Pipelines, teams and the fleet over HTTP. Ids are `namespace/name`, URL-encoded
(`airflow%3A%2F%2Fprod%2Fdaily_sales`). Health comes from the stored view rows: reads never compute."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Query, Request

from pipemon.access import Action, Caller
from pipemon.api import auth
from pipemon.engine.health import HealthState, reason_now
from pipemon.ingest.common import iso
from pipemon.store import reads

router = APIRouter(tags=["pipelines"])
_STATES = [s.value for s in HealthState]
READ = {"x-pipemon-action": Action.READ.value}
Reader = Annotated[Caller, Depends(auth.require(Action.READ))]


def _ts(v: float | None) -> str | None:
    return iso(v) if v is not None else None


def _muted(m: dict[str, Any] | None) -> dict[str, Any] | None:
    return {"reason": m["reason"], "until": _ts(m.get("until"))} if m else None


def pipeline_view(pm, row, full: bool = False) -> dict[str, Any]:
    view = msgspec.json.decode(row.view) if row.view else {}
    rule = pm.settings.rule_for(row.key)
    last = view.get("last_run") or {}
    metrics = dict(view.get("metrics") or {})
    for k in ("last_success_at", "last_failure_at"):
        if k in metrics:
            metrics[k] = _ts(metrics[k])
    if "freshness_s" in metrics and view.get("metrics", {}).get("last_success_at"):
        metrics["freshness_s"] = pm.clock.now() - view["metrics"]["last_success_at"]  # as of this read
    out: dict[str, Any] = {
        "id": row.key, "namespace": row.namespace, "name": row.name, "team": row.team,
        "tier": rule.tier if rule else None, "tags": dict(rule.tags) if rule else {},
        "integration": row.integration,
        "state": row.state or "unknown",
        "reason": reason_now(row.reason or "no finished run yet", view.get("overdue_since"), pm.clock.now()),
        "state_since": _ts(row.state_since),
        # a silence or maintenance window mutes notifications; the state above stays the truth
        "muted": _muted(view.get("muted")),
        "last_run": {"run_id": last.get("run_id"), "status": last.get("status"),
                     "started_at": _ts(last.get("started_at")), "ended_at": _ts(last.get("ended_at")),
                     "duration_s": last.get("duration"), "rows": last.get("rows"), "error": last.get("error")}
        if last else None,
        "first_seen": iso(row.first_seen), "last_event_at": iso(row.last_event_at),
    }
    if full:
        sched = view.get("schedule")
        if sched:
            sched = {**sched, "next_expected": _ts(sched.get("next_expected")),
                     "deadline": _ts(sched.get("deadline"))}
        declared = {k: v for k, v in (("schedule", rule.schedule), ("timezone", rule.timezone),
                                      ("grace_s", rule.grace), ("max_duration_s", rule.max_duration),
                                      ("sla", rule.sla)) if v is not None} if rule else {}
        out.update({"metrics": metrics, "schedule": sched, "declared": declared,
                    "conditions": [{**c, "since": _ts(c["since"])} for c in view.get("conditions", [])],
                    "owners": [row.team] if row.team else []})
    return out


@router.get("/api/v1/pipelines", summary="Pipelines with their health; filter by team, state and text",
            openapi_extra=READ)
def list_pipelines(request: Request, who: Reader, team: str | None = None,
                   state: Annotated[str | None,
                                    Query(description="comma-separated: " + ", ".join(_STATES))] = None,
                   q: Annotated[str | None, Query(description="substring of namespace/name")] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   cursor: str | None = None) -> dict[str, Any]:
    pm = request.app.state.pm
    states = _parse_states(state)
    with pm.db.connect() as conn:
        page = reads.list_pipelines(conn, team=team, q=q, states=states, limit=limit, cursor=cursor,
                                    scope=who.scope())
    return {"items": [pipeline_view(pm, r) for r in page.items], "next_cursor": page.next_cursor}


def _parse_states(state: str | None) -> list[str] | None:
    if not state:
        return None
    states = [s.strip() for s in state.split(",") if s.strip()]
    bad = [s for s in states if s not in _STATES]
    if bad:
        from pipemon.errors import BadRequest
        raise BadRequest(f"unknown state {bad[0]!r}; expected one of {', '.join(_STATES)}")
    return states


@router.get("/api/v1/summary", summary="The fleet: pipelines by state, overall and per team",
            description="Counts only the pipelines the caller may see.", openapi_extra=READ)
def summary(request: Request, who: Reader) -> dict[str, Any]:
    pm = request.app.state.pm
    with pm.db.connect() as conn:
        counts = reads.state_counts(conn, scope=who.scope())
    return _rollup(counts)


@router.get("/api/v1/teams/{team}/health", summary="One team: its pipelines by state, and the unhealthy ones",
            openapi_extra=READ)
def team_health(request: Request, who: Reader, team: str,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    pm = request.app.state.pm
    with pm.db.connect() as conn:
        counts = reads.state_counts(conn, team=team, scope=who.scope())
        if not counts:
            from pipemon.errors import NotFound
            raise NotFound(f"no pipelines of team {team!r}")
        bad = [s for s in _STATES if s not in ("healthy", "unknown")]
        page = reads.list_pipelines(conn, team=team, states=bad, limit=limit, scope=who.scope())
    rolled = _rollup(counts)
    items = sorted((pipeline_view(pm, r) for r in page.items), key=lambda p: HealthState(p["state"]).rank)
    return {"team": team, "pipelines": rolled["pipelines"], "by_state": rolled["by_state"],
            "healthy_ratio": rolled["healthy_ratio"], "unhealthy": items}


def _rollup(counts: list[tuple[str | None, str, int]]) -> dict[str, Any]:
    by_state = dict.fromkeys(_STATES, 0)
    teams: dict[str, dict[str, int]] = {}
    for team, st, n in counts:
        by_state[st] = by_state.get(st, 0) + n
        t = teams.setdefault(team or "unassigned", dict.fromkeys(_STATES, 0))
        t[st] = t.get(st, 0) + n
    total = sum(by_state.values())
    judged = total - by_state["unknown"]
    return {"pipelines": total, "by_state": by_state,
            "healthy_ratio": (by_state["healthy"] / judged) if judged else None,
            "teams": {t: {"pipelines": sum(v.values()), "by_state": v} for t, v in sorted(teams.items())}}


@router.get("/api/v1/pipelines/{pipeline_id:path}", summary="One pipeline: state, reason, metrics, schedule, "
                                                            "owners, upstream and downstream",
            openapi_extra=READ)
def get_pipeline(request: Request, who: Reader, pipeline_id: str) -> dict[str, Any]:
    pm = request.app.state.pm
    with pm.db.connect() as conn:
        row = reads.pipeline_with_state(conn, pipeline_id, who.scope())
        ds = reads.datasets(conn, row.id)
    lineage = pm.alerts.lineage  # through datasets and `depends_on`, kept in memory by the engine
    out = pipeline_view(pm, row, full=True)
    out.update({"upstream": sorted(lineage.upstream(row.key)),
                "downstream": sorted(lineage.downstream(row.key)), "datasets": ds})
    return out
