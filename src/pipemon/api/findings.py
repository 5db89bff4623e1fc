"""Anomaly findings over HTTP, and operator feedback on them (honoured from the pipeline's next run)."""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel

from pipemon.access import Action, Caller
from pipemon.api import auth
from pipemon.engine.detect import Verdict
from pipemon.errors import BadRequest
from pipemon.ingest.common import iso
from pipemon.store import audit, reads
from pipemon.store import state as st
from pipemon.api.owner import on_owner

router = APIRouter(tags=["findings"])


def finding_view(r, pipeline: str | None = None) -> dict[str, Any]:
    return {"id": r.id, "pipeline": pipeline or r.key, "kind": r.kind, "metric": r.metric,
            "time": iso(r.time), "run_id": r.run_id, "observed": r.observed, "expected": r.expected,
            "lower": r.lower, "upper": r.upper,
            "score": r.score, "direction": r.direction, "explanation": r.explanation, "verdict": r.verdict,
            "verdict_at": iso(r.verdict_at) if r.verdict_at else None}


@router.get("/api/v1/findings", summary="Anomaly findings, newest first",
            openapi_extra={"x-pipemon-action": Action.READ.value})
def list_findings(request: Request, who: Annotated[Caller, Depends(auth.require(Action.READ))],
                  pipeline: str | None = None, team: str | None = None,
                  since: datetime | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  cursor: str | None = None) -> dict[str, Any]:
    pm = request.app.state.pm
    with pm.db.connect() as conn:
        pid = reads.pipeline_row(conn, pipeline, who.scope()).id if pipeline else None
        page = reads.list_findings(conn, pipeline_id=pid, team=team,
                                   since=since.timestamp() if since else None, limit=limit, cursor=cursor,
                                   scope=who.scope())
    return {"items": [finding_view(r) for r in page.items], "next_cursor": page.next_cursor}


class VerdictName(enum.StrEnum):
    expected = "expected"
    incident = "incident"


class Feedback(BaseModel):
    verdict: VerdictName
    """expected: the new normal, re-baseline now. incident: a real problem, kept out of the baseline."""


@router.post("/api/v1/findings/{finding_id}/feedback",
             summary="Mark a finding expected (new normal) or an incident",
             openapi_extra={"x-pipemon-action": Action.OPERATE.value})
async def feedback(request: Request, who: Annotated[Caller, Depends(auth.require(Action.OPERATE))],
                   finding_id: Annotated[int, Path(ge=1, le=2**31 - 1)], body: Feedback) -> dict[str, Any]:
    pm = request.app.state.pm
    verdict = Verdict(body.verdict.value)

    def apply(conn, now):
        row = reads.finding(conn, finding_id, who.scope())
        try:
            pm.stages.feedback(conn, row.key, row.metric, verdict, now)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        rec = pm.writer.pipelines.get(row.key)
        audit.record(conn, actor=who, action="finding.feedback", target=str(finding_id), now=now,
                     team=rec.team if rec else None,
                     detail={"pipeline": row.key, "metric": row.metric, "verdict": verdict.value})
        return finding_view(st.set_verdict(conn, finding_id, verdict.value, now), row.key)

    return await on_owner(request, apply)
