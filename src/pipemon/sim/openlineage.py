"""SimEvent → OpenLineage 2.x RunEvent, as the plain dict `openlineage-python` would send.

The dicts match `Serde.to_dict()` of the client's `event_v2` classes exactly (empty `facets` and
`inputFacets` included, nulls dropped); tests/sim/test_openlineage.py rebuilds events with those
classes to prove it. The client is not a runtime dependency: the schema URLs below are the ones it
stamps (client 1.x, spec 2-0-2).

Datasets and their statistics ride on the pipeline-level (root) run's events, so a consumer that
reads only root runs sees volume and lineage. Task runs carry the `parent` facet (with `root`).
"""
from __future__ import annotations

from pipemon import __version__
from pipemon.sim.catalog import Integration
from pipemon.sim.events import EventType, SimEvent, SimRun
from pipemon.sim.fleet import Field, Pipeline
from pipemon.sim.schedule import iso

PRODUCER = f"https://github.com/pipemon/pipemon/tree/v{__version__}/src/pipemon/sim"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_FACETS = "https://openlineage.io/spec/facets/"
_SCHEMA_URL = {
    "nominalTime": _FACETS + "1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet",
    "parent": _FACETS + "1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
    "errorMessage": _FACETS + "1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "ownership": _FACETS + "1-0-1/OwnershipJobFacet.json#/$defs/OwnershipJobFacet",
    "jobType": _FACETS + "2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "tags": _FACETS + "1-0-0/TagsJobFacet.json#/$defs/TagsJobFacet",
    "schema": _FACETS + "1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "outputStatistics": _FACETS + "1-0-2/OutputStatisticsOutputDatasetFacet.json"
                                  "#/$defs/OutputStatisticsOutputDatasetFacet",
}
# jobType.jobType of (the pipeline run, its child runs)
_JOB_TYPES = {Integration.AIRFLOW: ("DAG", "TASK"), Integration.DBT: ("JOB", "MODEL"),
              Integration.SPARK: ("JOB", "JOB"), Integration.CRON: ("JOB", "JOB")}


def to_openlineage(event: SimEvent) -> dict:
    run, task, p = event.run, event.task, event.run.pipeline
    run_facets: dict = {"nominalTime": _facet("nominalTime", nominalStartTime=iso(run.nominal_ms),
                                              nominalEndTime=iso(run.nominal_ms + p.schedule.period_ms))}
    if task is None:
        run_id = run.run_id
        job = _job(p.namespace, p.name, p, child=False)
        inputs = [{"namespace": d.namespace, "name": d.name, "facets": {}, "inputFacets": {}}
                  for d in p.inputs]
        outputs = _outputs(run, with_stats=event.type is EventType.COMPLETE)
    else:
        run_id = task.run_id
        job = _job(p.namespace, f"{p.name}.{task.name}", p, child=True)
        inputs, outputs = [], []
        run_facets["parent"] = _facet("parent", run=_run_ref(run), job=_job_ref(p),
                                      root={"run": _run_ref(run), "job": _job_ref(p)})
    if event.type in (EventType.FAIL, EventType.ABORT) and run.error is not None:
        message = f"{run.error.type}: {run.error.message}"
        if task is None and run.failed_task is not None:
            message = f"Task {run.failed_task} failed: {message}"
        run_facets["errorMessage"] = _facet("errorMessage", message=message,
                                            programmingLanguage=run.error.language)
        if run.error.stack_trace:
            run_facets["errorMessage"]["stackTrace"] = run.error.stack_trace
    return {
        "eventTime": iso(event.time_ms),
        "eventType": event.type.value,
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA,
        "run": {"runId": run_id, "facets": run_facets},
        "job": job,
        "inputs": inputs,
        "outputs": outputs,
    }


def _facet(kind: str, **fields: object) -> dict:
    return {"_producer": PRODUCER, "_schemaURL": _SCHEMA_URL[kind], **fields}


def _job(namespace: str, name: str, p: Pipeline, *, child: bool) -> dict:
    facets = {
        "jobType": _facet("jobType", processingType="BATCH", integration=p.integration.value,
                          jobType=_JOB_TYPES[p.integration][child]),
        "ownership": _facet("ownership", owners=[{"name": f"team:{p.team}", "type": "team"}]),
    }
    if not child:
        facets["tags"] = _facet("tags", tags=[{"key": k, "value": v} for k, v in p.tags])
    return {"namespace": namespace, "name": name, "facets": facets}


def _run_ref(run: SimRun) -> dict:
    return {"runId": run.run_id, "facets": {}}


def _job_ref(p: Pipeline) -> dict:
    return {"namespace": p.namespace, "name": p.name, "facets": {}}


def _outputs(run: SimRun, *, with_stats: bool) -> list[dict]:
    outputs = []
    datasets = run.pipeline.outputs
    for n, d in enumerate(datasets):
        fields = run.fields if n == 0 else d.fields
        out: dict = {"namespace": d.namespace, "name": d.name,
                     "facets": {"schema": _facet("schema", fields=_fields(fields))}, "outputFacets": {}}
        if with_stats and run.rows is not None and run.bytes is not None:
            rows, size = _split(run.rows, n, len(datasets)), _split(run.bytes, n, len(datasets))
            out["outputFacets"]["outputStatistics"] = _facet("outputStatistics", rowCount=rows, size=size)
        outputs.append(out)
    return outputs


def _fields(fields: tuple[Field, ...]) -> list[dict]:
    return [{"name": f.name, "type": f.type, "fields": []} for f in fields]


def _split(total: int, n: int, count: int) -> int:
    """The run's rows (or bytes) spread over its outputs: a secondary output (rejects) gets 1%."""
    if count == 1:
        return total
    secondary = total // 100
    return total - secondary * (count - 1) if n == 0 else secondary

