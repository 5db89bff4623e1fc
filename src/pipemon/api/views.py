"""How domain objects look in JSON: ISO 8601 times, explicit units, nothing internal."""
from __future__ import annotations

from typing import Any

from pipemon.ingest.common import iso
from pipemon.model import Run


def run_view(run: Run, tasks: list[Run] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pipeline": run.pipeline,
        "run_id": run.run_id,
        "status": run.status.value,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "duration_s": run.duration,
        "rows": run.rows,
        "bytes": run.bytes,
        "metrics": run.metrics or {},
        "error": {"message": run.error_message, "type": run.error_type} if run.error_message else None,
        "log_excerpt": run.log_excerpt,
        "nominal_time": iso(run.nominal_time),
        "parent_run_id": run.parent_run_id,
        "job": run.job,
        "last_event_at": iso(run.last_event_time),
    }
    if tasks is not None:
        out["tasks"] = [run_view(t) for t in tasks]
        failed = [t for t in tasks if t.status.value in ("failed", "aborted")]
        out["failed_tasks"] = [t.job for t in failed]
    return out
