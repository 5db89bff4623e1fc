"""The OpenLineage dicts are exactly what openlineage-python would send: rebuilt with the client's
own `event_v2` classes and serialised by its `Serde`, they come out identical."""
from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from datetime import datetime

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    error_message_run,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    ownership_job,
    parent_run,
    schema_dataset,
    tags_job,
)
from openlineage.client.serde import Serde

from pipemon import sim


def rebuild(d: dict) -> RunEvent:
    """The event built the way an integration builds it with the client."""
    producer = d["producer"]
    rf, jf = d["run"]["facets"], d["job"]["facets"]
    run_facets: dict = {}
    if "nominalTime" in rf:
        nt = rf["nominalTime"]
        run_facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=nt["nominalStartTime"], nominalEndTime=nt.get("nominalEndTime"),
            producer=producer)
    if "parent" in rf:
        pr = rf["parent"]
        run_facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=pr["run"]["runId"]),
            job=parent_run.Job(namespace=pr["job"]["namespace"], name=pr["job"]["name"]),
            root=parent_run.Root(run=parent_run.RootRun(runId=pr["root"]["run"]["runId"]),
                                 job=parent_run.RootJob(namespace=pr["root"]["job"]["namespace"],
                                                        name=pr["root"]["job"]["name"])),
            producer=producer)
    if "errorMessage" in rf:
        em = rf["errorMessage"]
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=em["message"], programmingLanguage=em["programmingLanguage"],
            stackTrace=em.get("stackTrace"), producer=producer)
    job_facets: dict = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType=jf["jobType"]["processingType"], integration=jf["jobType"]["integration"],
            jobType=jf["jobType"]["jobType"], producer=producer),
        "ownership": ownership_job.OwnershipJobFacet(
            owners=[ownership_job.Owner(name=o["name"], type=o["type"]) for o in jf["ownership"]["owners"]],
            producer=producer),
    }
    if "tags" in jf:
        job_facets["tags"] = tags_job.TagsJobFacet(
            tags=[tags_job.TagsJobFacetFields(key=t["key"], value=t["value"]) for t in jf["tags"]["tags"]],
            producer=producer)
    outputs = []
    for o in d["outputs"]:
        schema = schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=f["name"], type=f["type"])
                    for f in o["facets"]["schema"]["fields"]], producer=producer)
        output_facets = {}
        if "outputStatistics" in o["outputFacets"]:
            st = o["outputFacets"]["outputStatistics"]
            statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet
            output_facets["outputStatistics"] = statistics(rowCount=st["rowCount"], size=st["size"],
                                                           producer=producer)
        outputs.append(OutputDataset(namespace=o["namespace"], name=o["name"], facets={"schema": schema},
                                     outputFacets=output_facets))
    return RunEvent(
        eventType=RunState(d["eventType"]), eventTime=d["eventTime"], producer=producer,
        run=Run(runId=d["run"]["runId"], facets=run_facets),
        job=Job(namespace=d["job"]["namespace"], name=d["job"]["name"], facets=job_facets),
        inputs=[InputDataset(namespace=i["namespace"], name=i["name"]) for i in d["inputs"]],
        outputs=outputs,
    )


def sample(events: list[dict]) -> list[dict]:
    """A few of every shape: root and task runs, each event type, failures and statistics."""
    picked: dict[tuple, list[dict]] = defaultdict(list)
    for e in events:
        key = (e["eventType"], "parent" in e["run"]["facets"], e["job"]["facets"]["jobType"]["integration"],
               "errorMessage" in e["run"]["facets"], len(e["outputs"]))
        if len(picked[key]) < 5:
            picked[key].append(e)
    return [e for group in picked.values() for e in group]


def test_events_equal_what_the_client_serialises(events: list[dict]) -> None:
    chosen = sample(events)
    assert len(chosen) > 40
    for e in chosen:
        assert Serde.to_dict(rebuild(e)) == e
        assert json.loads(Serde.to_json(rebuild(e))) == e


def test_event_types_and_integrations_are_all_present(events: list[dict]) -> None:
    types = Counter(e["eventType"] for e in events)
    assert {"START", "COMPLETE", "FAIL", "ABORT"} <= types.keys()
    assert types["START"] == types["COMPLETE"] + types["FAIL"] + types["ABORT"] + open_runs(events)
    kinds = {(e["job"]["facets"]["jobType"]["integration"], e["job"]["facets"]["jobType"]["jobType"])
             for e in events}
    assert kinds == {("AIRFLOW", "DAG"), ("AIRFLOW", "TASK"), ("DBT", "JOB"), ("DBT", "MODEL"),
                     ("SPARK", "JOB"), ("CRON", "JOB")}


def open_runs(events: list[dict]) -> int:
    """Runs started before the end of the window that finish after it."""
    ended = {e["run"]["runId"] for e in events if e["eventType"] != "START"}
    return sum(1 for e in events if e["eventType"] == "START" and e["run"]["runId"] not in ended)


def test_required_fields(events: list[dict]) -> None:
    for e in events[:5000]:
        assert e["schemaURL"].startswith("https://openlineage.io/spec/2-")
        assert e["producer"] == sim.PRODUCER
        assert datetime.fromisoformat(e["eventTime"]).utcoffset() is not None
        uuid.UUID(e["run"]["runId"])
        assert e["run"]["facets"]["nominalTime"]["nominalStartTime"] <= e["eventTime"]
        owners = e["job"]["facets"]["ownership"]["owners"]
        assert owners[0]["name"].startswith("team:") and owners[0]["type"] == "team"
        assert e["job"]["facets"]["jobType"]["processingType"] == "BATCH"
        for o in e["outputs"]:
            assert o["facets"]["schema"]["fields"]
            stats = o["outputFacets"].get("outputStatistics")
            assert (stats is not None) == (e["eventType"] == "COMPLETE")


def test_task_runs_point_at_their_pipeline_run(events: list[dict]) -> None:
    roots = {e["run"]["runId"]: e for e in events if "parent" not in e["run"]["facets"]}
    tasks = [e for e in events if "parent" in e["run"]["facets"]]
    assert tasks
    for e in tasks:
        parent = e["run"]["facets"]["parent"]
        assert parent["root"]["run"]["runId"] == parent["run"]["runId"]
        root = roots[parent["run"]["runId"]]
        assert root["job"]["namespace"] == parent["job"]["namespace"] == e["job"]["namespace"]
        assert root["job"]["name"] == parent["job"]["name"]
        assert e["job"]["name"].startswith(root["job"]["name"] + ".")
        assert e["inputs"] == e["outputs"] == []


def test_failures_carry_an_error_naming_the_task(events: list[dict]) -> None:
    failed = [e for e in events if e["eventType"] in ("FAIL", "ABORT")]
    assert failed
    for e in failed:
        error = e["run"]["facets"]["errorMessage"]
        assert error["message"] and error["programmingLanguage"] in ("PYTHON", "SQL", "JAVA")
    failed_tasks = {e["job"]["name"].rsplit(".", 1)[1] for e in failed if "parent" in e["run"]["facets"]}
    dags = [e for e in failed
            if "parent" not in e["run"]["facets"] and e["job"]["facets"]["jobType"]["jobType"] == "DAG"]
    root_messages = [e["run"]["facets"]["errorMessage"]["message"] for e in dags]
    assert root_messages and all(m.startswith("Task ") for m in root_messages)
    assert any(f"Task {t} failed" in m for t in failed_tasks for m in root_messages)


def test_each_run_starts_once_before_it_ends_once(events: list[dict]) -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for e in events:
        seen[e["run"]["runId"]].append(e["eventType"])
    for types in seen.values():
        assert types[0] == "START" and types.count("START") == 1 and len(types) <= 2


def test_schema_change_is_visible_in_the_schema_facet(fleet: sim.Fleet, events: list[dict],
                                                      truth: list[sim.Incident]) -> None:
    change = next(i for i in truth if i.kind is sim.IncidentKind.SCHEMA_CHANGE and "showcase" in i.id)
    pipeline = fleet.by_id[change.pipelines[0]]
    base = tuple((f.name, f.type) for f in pipeline.outputs[0].fields)
    before, after = set(), set()
    for e in events:
        if (e["job"]["namespace"], e["job"]["name"]) == (pipeline.namespace, pipeline.name) \
                and e["eventType"] == "COMPLETE":
            nominal_text = e["run"]["facets"]["nominalTime"]["nominalStartTime"]
            nominal = datetime.fromisoformat(nominal_text).timestamp()
            fields = tuple((f["name"], f["type"]) for f in e["outputs"][0]["facets"]["schema"]["fields"])
            (before if nominal < change.start else after).add(fields)
    assert before == {base}
    assert len(after) == 1 and after != before  # changed once, and it stays changed


@pytest.mark.parametrize("key", ["eventTime", "eventType", "producer", "schemaURL", "run", "job",
                                 "inputs", "outputs"])
def test_top_level_keys(events: list[dict], key: str) -> None:
    assert all(key in e for e in events[:1000])
