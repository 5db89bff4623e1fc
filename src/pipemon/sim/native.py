"""SimEvent → pipemon's native JSON event: the same stream, flat and without OpenLineage facets.

Optional keys are left out rather than sent as null: `parent` on task runs, `inputs`/`outputs`
on pipeline runs, `metrics` on a pipeline run's COMPLETE, `error` on FAIL and ABORT.
"""
from __future__ import annotations

from pipemon.sim.events import EventType, SimEvent
from pipemon.sim.schedule import iso


def to_native(event: SimEvent) -> dict:
    run, task, p = event.run, event.task, event.run.pipeline
    d: dict = {
        "namespace": p.namespace,
        "name": p.name if task is None else f"{p.name}.{task.name}",
        "run_id": run.run_id if task is None else task.run_id,
        "type": event.type.value.lower(),
        "event_time": iso(event.time_ms),
        "event_id": event.event_id,
        "team": p.team,
        "nominal_time": iso(run.nominal_ms),
    }
    if task is not None:
        d["parent"] = {"namespace": p.namespace, "name": p.name, "run_id": run.run_id}
    else:
        d["inputs"] = [f"{ds.namespace}/{ds.name}" for ds in p.inputs]
        d["outputs"] = [f"{ds.namespace}/{ds.name}" for ds in p.outputs]
        if event.type is EventType.COMPLETE and run.rows is not None:
            d["metrics"] = {"rows": run.rows, "bytes": run.bytes}
    if event.type in (EventType.FAIL, EventType.ABORT) and run.error is not None:
        message = run.error.message
        if task is None and run.failed_task is not None:
            message = f"task {run.failed_task} failed: {message}"
        d["error"] = {"message": message, "type": run.error.type}
    return d
