"""Pipelines over HTTP. Ids are `namespace/name`, URL-encoded (`airflow%3A%2F%2Fprod%2Fdaily_sales`)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from pipemon.api.views import run_view
from pipemon.ingest.common import iso
from pipemon.store import reads

router = APIRouter(tags=["pipelines"])


def _pipeline_view(p, last=None) -> dict[str, Any]:
    return {"id": p.key, "namespace": p.namespace, "name": p.name, "team": p.team, "integration": p.integration,
            "first_seen": iso(p.first_seen), "last_event_at": iso(p.last_event_at),
            "last_run": run_view(last) if last else None}


@router.get("/api/v1/pipelines", summary="Pipelines, with their last run")
def list_pipelines(request: Request, team: str | None = None,
                   q: Annotated[str | None, Query(description="substring of namespace/name")] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None) -> dict[str, Any]:
    with request.app.state.pm.engine.connect() as conn:
        page = reads.list_pipelines(conn, team=team, q=q, limit=limit, cursor=cursor)
        last = reads.last_runs(conn, [p.id for p in page.items])
    return {"items": [_pipeline_view(p, last.get(p.id)) for p in page.items], "next_cursor": page.next_cursor}


@router.get("/api/v1/pipelines/{pipeline_id:path}", summary="One pipeline: owner, last run, lineage")
def get_pipeline(request: Request, pipeline_id: str) -> dict[str, Any]:
    with request.app.state.pm.engine.connect() as conn:
        p = reads.pipeline_row(conn, pipeline_id)
        last = reads.last_runs(conn, [p.id]).get(p.id)
        up, down = reads.neighbours(conn, p.id)
        ds = reads.datasets(conn, p.id)
    return {**_pipeline_view(p, last), "upstream": up, "downstream": down, "datasets": ds}
