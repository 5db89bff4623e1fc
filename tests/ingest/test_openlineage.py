import json
from datetime import datetime, timezone

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (error_message_run, nominal_time_run, output_statistics_output_dataset,
                                         ownership_job, parent_run, schema_dataset)
from openlineage.client.serde import Serde

from pipemon.errors import BadJson, InvalidEvent
from pipemon.ingest import openlineage
from pipemon.model import EventType

NOW = 1_800_000_000.0  # 2027-01-15: after the events below (a later time is refused)
RUN_ID = "0191e8a3-6f1c-7a22-9d1e-3b1c2a000001"
PARENT_ID = "0191e8a3-6f1c-7a22-9d1e-3b1c2a000002"


def client_event(state=RunState.COMPLETE, **kw):
    """An event built by the real openlineage-python classes and serialised by its Serde."""
    run_facets = kw.get("run_facets", {})
    ev = RunEvent(eventType=state, eventTime="2026-11-26T02:10:00.000+00:00",
                  run=Run(runId=RUN_ID, facets=run_facets), job=Job(namespace="airflow://prod", name="sales.load",
                                                                     facets=kw.get("job_facets", {})),
                  producer="https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python",
                  inputs=kw.get("inputs", []), outputs=kw.get("outputs", []))
    return Serde.to_json(ev).encode()


def test_client_event_maps_every_field():
    body = client_event(
        RunState.FAIL,
        run_facets={
            "errorMessage": error_message_run.ErrorMessageRunFacet(message="division by zero", programmingLanguage="python"),
            "nominalTime": nominal_time_run.NominalTimeRunFacet(nominalStartTime="2026-11-26T02:00:00Z"),
            "parent": parent_run.ParentRunFacet(run=parent_run.Run(runId=PARENT_ID),
                                                job=parent_run.Job(namespace="airflow://prod", name="sales")),
        },
        job_facets={"ownership": ownership_job.OwnershipJobFacet(owners=[ownership_job.Owner(name="team:payments")])},
        inputs=[InputDataset(namespace="postgres://db", name="public.orders")],
        outputs=[OutputDataset(namespace="s3://lake", name="sales/daily", outputFacets={
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=1200, size=4096)},
            facets={"schema": schema_dataset.SchemaDatasetFacet(fields=[
                schema_dataset.SchemaDatasetFacetFields(name="id", type="int"),
                schema_dataset.SchemaDatasetFacetFields(name="amount", type="decimal")])}),
            OutputDataset(namespace="s3://lake", name="sales/extra", outputFacets={
                "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=800)})],
    )
    [ev] = openlineage.parse(body, NOW)
    assert (ev.namespace, ev.name, ev.run_id, ev.type) == ("airflow://prod", "sales.load", RUN_ID, EventType.FAIL)
    assert (ev.error_message, ev.error_type) == ("division by zero", "python")
    assert ev.nominal_time == datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc).timestamp()
    assert (ev.parent.namespace, ev.parent.name, ev.parent.run_id) == ("airflow://prod", "sales", PARENT_ID)
    assert ev.team == "payments"
    assert (ev.rows, ev.bytes) == (2000, 4096)
    assert ev.inputs == ("postgres://db/public.orders",)
    assert ev.outputs == ("s3://lake/sales/daily", "s3://lake/sales/extra")
    assert ev.schemas == {"s3://lake/sales/daily": (("id", "int"), ("amount", "decimal"))}
    assert json.loads(ev.raw)["run"]["runId"] == RUN_ID  # raw facets kept


def test_same_event_same_key_other_type_other_key():
    a = openlineage.parse(client_event(RunState.COMPLETE), NOW)[0]
    b = openlineage.parse(client_event(RunState.COMPLETE), NOW)[0]
    c = openlineage.parse(client_event(RunState.START), NOW)[0]
    assert a.key == b.key != c.key


def test_root_parent_is_kept():
    body = json.loads(client_event())
    body["run"]["facets"]["parent"] = {"run": {"runId": "p"}, "job": {"namespace": "n", "name": "task"},
                                       "root": {"run": {"runId": "r"}, "job": {"namespace": "n", "name": "dag"}}}
    [ev] = openlineage.parse(json.dumps(body).encode(), NOW)
    assert (ev.parent.run_id, ev.root.run_id, ev.root.name) == ("p", "r", "dag")


def test_job_event_and_dataset_event_are_accepted():
    job_event = {"eventTime": "2026-11-26T00:00:00Z", "producer": "p", "schemaURL": "s",
                 "job": {"namespace": "n", "name": "j", "facets": {}}, "inputs": [], "outputs": []}
    [ev] = openlineage.parse(json.dumps(job_event).encode(), NOW)
    assert ev.run_id == "" and ev.type is EventType.HEARTBEAT
    dataset_event = {"eventTime": "2026-11-26T00:00:00Z", "producer": "p", "schemaURL": "s",
                     "dataset": {"namespace": "n", "name": "d"}}
    assert openlineage.parse(json.dumps(dataset_event).encode(), NOW) == []


def test_other_is_a_heartbeat():
    body = json.loads(client_event())
    body["eventType"] = "OTHER"
    assert openlineage.parse(json.dumps(body).encode(), NOW)[0].type is EventType.HEARTBEAT


@pytest.mark.parametrize("mutate,loc", [
    (lambda b: b.update(eventType="EXPLODED"), "$.eventType"),
    (lambda b: b.update(eventTime="not a time"), "$.eventTime"),
    (lambda b: b["job"].pop("name"), "$.job.name"),
    (lambda b: b["run"].update(runId=5), "$.run.runId"),
    (lambda b: b.pop("run") and b.pop("job"), "$"),
    (lambda b: b["run"]["facets"].update(parent={"run": {}}), "$.run.facets.parent.run"),
    (lambda b: b["outputs"].append({"namespace": "n", "name": "d", "outputFacets": {"outputStatistics": {"rowCount": "x"}}}),
     "$.outputs[0].outputFacets.outputStatistics.rowCount"),
])
def test_invalid_events_name_the_path(mutate, loc):
    body = json.loads(client_event())
    mutate(body)
    with pytest.raises(InvalidEvent) as e:
        openlineage.parse(json.dumps(body).encode(), NOW)
    assert any(p.loc == loc for p in e.value.problems), e.value.problems


def test_malformed_json():
    with pytest.raises(BadJson):
        openlineage.parse(b'{"eventTime": ', NOW)
