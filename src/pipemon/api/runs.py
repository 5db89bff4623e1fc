"""Runs and pipelines over HTTP (the health issue extends these with state, metrics and filters)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from pipemon.api.views import run_view
from pipemon.model import RunStatus
from pipemon.store import reads

router = APIRouter(tags=["runs"])


def _conn(request: Request):
    return request.app.state.pm.engine.connect()


@router.get("/api/v1/runs/{run_id}", summary="One run, with its tasks and error")
def get_run(request: Request, run_id: str,
            pipeline: Annotated[str | None, Query(description="namespace/name, when the run id is shared")] = None
            ) -> dict[str, Any]:
    with _conn(request) as conn:
        run, tasks = reads.find_run(conn, run_id, pipeline)
    return run_view(run, tasks)


@router.get("/api/v1/pipelines/{pipeline_id:path}/runs", summary="A pipeline's runs, newest first")
def get_pipeline_runs(
    request: Request, pipeline_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
    since: datetime | None = None,
    status: RunStatus | None = None,
    tasks: bool = False,
) -> dict[str, Any]:
    with _conn(request) as conn:
        p = reads.pipeline_row(conn, pipeline_id)
        page = reads.list_runs(conn, p.id, p.key, limit=limit, cursor=cursor,
                               since=since.timestamp() if since else None,
                               status=status.value if status else None, tasks=tasks)
    return {"pipeline": p.key, "items": [run_view(r) for r in page.items], "next_cursor": page.next_cursor}
