"""Runs and pipelines over HTTP (the health issue extends these with state, metrics and filters)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from pipemon.access import Action, Caller
from pipemon.api import auth
from pipemon.api.views import run_view
from pipemon.engine.runs import failed_first, not_run, task_name
from pipemon.model import Run, RunStatus
from pipemon.store import reads

router = APIRouter(tags=["runs"])
READ = {"x-pipemon-action": Action.READ.value}
Reader = Annotated[Caller, Depends(auth.require(Action.READ))]


def _conn(request: Request):
    return request.app.state.pm.db.connect()


@router.get("/api/v1/runs/{run_id}", summary="One run, with its tasks and error", openapi_extra=READ)
def get_run(request: Request, who: Reader, run_id: str,
            pipeline: Annotated[str | None,
                                Query(description="namespace/name, when the run id is shared")] = None
            ) -> dict[str, Any]:
    with _conn(request) as conn:
        run, tasks = reads.find_run(conn, run_id, pipeline, who.scope())
    return tree_view(run, tasks)


def what_broke_view(run: Run) -> dict[str, Any] | None:
    """The run's cause (engine.runs.what_broke): the headline, and the stack trace's last lines when sent."""
    if not run.cause:
        return None
    headline, _, trace = run.cause.partition("\n")
    return {"headline": headline, "trace": trace or None}


def tree_view(run: Run, tasks: list[Run]) -> dict[str, Any]:
    """A run with its tasks (each with its short `task` name), what broke, and the tasks that never ran
    (listed by the scheduler with no event of their own: `skipped`, `upstream_failed` …; neither failed nor
    succeeded). A pending parent (tasks seen, none of its own events) says so. A failed task's `broke_rank`
    orders what broke (0: the headline's task; engine.runs.failed_first), for listings that show it first."""
    out = run_view(run, tasks)
    rank = {id(t): i for i, t in enumerate(failed_first(tasks))}
    for view, t in zip(out["tasks"], tasks):
        view["task"] = task_name(run.pipeline, t.job)
        view["broke_rank"] = rank.get(id(t))
    out["pending"] = not run.own_events
    out["what_broke"] = what_broke_view(run)
    out["task_states"] = run.task_states
    out["not_run"] = [{"task": k, "state": v} for k, v in not_run(run.pipeline, run, tasks).items()]
    return out


@router.get("/api/v1/pipelines/{pipeline_id:path}/runs", summary="A pipeline's runs, newest first",
            openapi_extra=READ)
def get_pipeline_runs(
    request: Request, who: Reader, pipeline_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
    since: datetime | None = None,
    status: RunStatus | None = None,
    tasks: bool = False,
) -> dict[str, Any]:
    with _conn(request) as conn:
        p = reads.pipeline_row(conn, pipeline_id, who.scope())
        page = reads.list_runs(conn, p.id, p.key, limit=limit, cursor=cursor,
                               since=since.timestamp() if since else None,
                               status=status.value if status else None, tasks=tasks)
    items = [run_view(r) | {"what_broke": what_broke_view(r), "pending": not r.own_events}
             for r in page.items]
    return {"pipeline": p.key, "items": items, "next_cursor": page.next_cursor}
