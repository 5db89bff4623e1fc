"""Airflow through its OpenLineage provider, replayed from events a real Airflow 2.10.5 sent
(tests/fixtures/airflow/README.md says how they were recorded).

A DAG run is one run whatever order its events arrive in; what broke names the failing task; tasks that
never ran are listed; the DAG's owner and timetable are used with no configuration.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipemon.api.app import create_app
from pipemon.app import build
from pipemon.clock import FakeClock
from pipemon.config import Settings, loads
from pipemon.ingest import openlineage
from pipemon.model import MANUAL_SCHEDULE, Event, EventType
from tests.alerting.receiver import Receiver

FIXTURES = Path(__file__).parent.parent / "fixtures" / "airflow"
ORDERS = "prod_airflow/orders_daily"


def load(name: str) -> list[Event]:
    out = []
    for line in (FIXTURES / name).read_text().splitlines():
        out += openlineage.parse(line.encode(), 0.0)
    return out


SCHEDULER = load("scheduler.jsonl")
DAGS_TEST = load("dags_test_orders.jsonl")


def test_the_providers_facets_give_task_states_schedule_owner_and_the_stack_trace():
    dag_fail = next(e for e in SCHEDULER if e.pipeline == ORDERS and e.type is EventType.FAIL)
    assert dag_fail.task_states == {"extract": "success", "transform": "failed", "load": "upstream_failed"}
    assert (dag_fail.schedule, dag_fail.schedule_tz, dag_fail.team) == ("0 0 * * *", "UTC", "orders-team")
    assert dag_fail.error_message == "task_failure"
    task_fail = next(e for e in SCHEDULER if e.name == "orders_daily.transform" and e.type is EventType.FAIL)
    assert (task_fail.error_message, task_fail.error_type) == ("bad row in orders: id=42", "ValueError")
    assert task_fail.log is not None
    assert task_fail.log.splitlines()[-1] == "ValueError: bad row in orders: id=42"
    assert 'raise ValueError("bad row in orders: id=42")' in task_fail.log
    assert (task_fail.root_team, task_fail.schedule) == ("orders-team", "0 0 * * *")
    customers = next(e for e in SCHEDULER if e.pipeline == "prod_airflow/customers_daily")
    assert customers.schedule == "0 0 * * *"  # `@daily`, as its timetable expression
    assert next(e for e in SCHEDULER if e.pipeline == "prod_airflow/invoices_hourly").schedule == "15 * * * *"


def test_airflows_default_owner_names_no_team():
    # every DAG without an owner of its own says "airflow": a team token must not see its pipeline given
    # to a team called "airflow" (the config's team or the token's team decides instead)
    raw = [json.loads(x) for x in (FIXTURES / "scheduler.jsonl").read_text().splitlines()]
    body = next(r for r in raw if r["run"]["facets"].get("airflowDagRun"))
    assert openlineage.parse(json.dumps(body).encode(), 0.0)[0].team not in (None, "airflow")
    body["run"]["facets"]["airflowDagRun"]["dag"]["owner"] = "airflow"
    body["job"]["facets"]["ownership"]["owners"] = [{"name": "airflow"}]
    [ev] = openlineage.parse(json.dumps(body).encode(), 0.0)
    assert ev.team is None and ev.root_team is None


@pytest.mark.parametrize("dag", [
    {"timetable": {}, "timetable_summary": "None", "schedule_interval": None},          # schedule=None
    {"timetable": {}, "timetable_summary": "@once"},
    {"timetable": {"dataset_condition": {"__type": "dataset"}}, "timetable_summary": "Dataset"},
])
def test_a_dag_with_no_schedule_is_manual(dag):
    body = json.loads((FIXTURES / "dags_test_orders.jsonl").read_text().splitlines()[-1])
    body["run"]["facets"]["airflowDagRun"]["dag"].update(dag)
    [ev] = openlineage.parse(json.dumps(body).encode(), 0.0)
    assert ev.schedule == MANUAL_SCHEDULE


def test_odd_provider_facets_never_refuse_an_event():
    body = json.loads((FIXTURES / "dags_test_orders.jsonl").read_text().splitlines()[-1])
    body["run"]["facets"]["airflowState"] = {"tasksState": "not a map"}
    body["run"]["facets"]["airflowDagRun"] = {"dag": {"timetable": {"expression": "not cron"}, "owner": 7}}
    [ev] = openlineage.parse(json.dumps(body).encode(), 0.0)
    assert (ev.task_states, ev.schedule, ev.team) == (None, None, "orders-team")


# --- replay through a whole pipemon ----------------------------------------------------------------------

class Replay:
    """A pipemon on SQLite, no threads, fed one event per transaction; the API read through a TestClient."""

    def __init__(self, tmp: Path, name: str, config: Settings | None = None, now: float = 0.0) -> None:
        self.clock = FakeClock(now)
        self.pm = build(f"sqlite:///{tmp}/{name}.db", config or Settings(), clock=self.clock)
        self.api = TestClient(create_app(self.pm), raise_server_exceptions=True)

    def feed(self, events: list[Event]) -> Replay:
        for ev in events:
            self.pm.writer.ingest([ev])
        self.pm.writer.tick()
        return self

    def get(self, path: str, **params) -> dict:
        r = self.api.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def pipeline(self, key: str) -> dict:
        return self.get(f"/api/v1/pipelines/{key}")

    def snapshot(self) -> dict:
        """Runs (every stored field), figures and open alerts: what must not depend on arrival order."""
        with self.pm.db.connect() as c:
            runs = sorted(tuple(str(v) for v in r) for r in c.exec_driver_sql(
                "SELECT p.key, r.run_id, r.parent_run_id, r.job, r.status, r.started_at, r.ended_at, "
                "r.start_seen, r.own_events, r.rows, r.error_message, r.error_type, r.log_excerpt, "
                "r.task_states, r.cause "
                "FROM runs r JOIN pipelines p ON p.id = r.pipeline_id"))
        figures = {}
        for p in self.get("/api/v1/pipelines")["items"]:
            v = self.pipeline(p["id"] if "id" in p else p["pipeline"])
            m = v["metrics"]
            figures[v["pipeline"] if "pipeline" in v else v["id"]] = (
                v["state"], v["reason"], v["team"], m["runs_total"], m["success_rate_24h"],
                m["last_success_at"],
                m.get("last_failure_at"), m.get("duration_p50_s"))
        alerts = sorted((a["pipeline"], a["kind"], a["summary"], a["team"], a["run_id"], a["failed_task"],
                         a["error"]) for a in self.get("/api/v1/alerts")["items"])
        findings = sorted((f.get("pipeline"), f.get("kind"), f.get("metric"), f.get("run_id"))
                          for f in self.get("/api/v1/findings")["items"])
        return {"runs": runs, "figures": figures, "alerts": alerts, "findings": findings}

    def close(self) -> None:
        self.api.close()
        self.pm.close()


AFTER = max(e.time for e in SCHEDULER) + 60


@pytest.fixture
def replay(tmp_path):
    made: list[Replay] = []

    def make(name: str = "r", config: Settings | None = None, now: float = AFTER) -> Replay:
        r = Replay(tmp_path, name, config, now)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def test_dags_test_counts_one_failed_dag_run_names_what_broke_and_lists_the_task_that_never_ran(replay):
    # tasks first: `dags test` sends no DAG START
    r = replay(now=max(e.time for e in DAGS_TEST) + 60).feed(DAGS_TEST)
    p = r.pipeline(ORDERS)
    m = p["metrics"]
    assert (m["runs_total"], m["success_rate_24h"], m["last_success_at"]) == (1, 0.0, None)
    assert (p["state"], p["team"]) == ("failing", "orders-team")
    assert "transform failed: ValueError: bad row in orders: id=42" in p["reason"]
    [alert] = r.get("/api/v1/alerts", pipeline=ORDERS)["items"]
    assert alert["team"] == "orders-team"
    assert alert["summary"].startswith(f"{ORDERS} failed: ")
    assert "transform failed: ValueError: bad row in orders: id=42" in alert["summary"]
    assert alert["failed_task"] == f"{ORDERS}.transform"
    runs = r.get(f"/api/v1/pipelines/{ORDERS}/runs")["items"]
    assert [x["status"] for x in runs] == ["failed"]  # the tasks are no runs of the pipeline
    run = r.get(f"/api/v1/runs/{runs[0]['run_id']}")
    assert run["what_broke"]["headline"] == "transform failed: ValueError: bad row in orders: id=42"
    assert run["what_broke"]["trace"].splitlines()[-1] == "ValueError: bad row in orders: id=42"
    assert run["not_run"] == [{"task": "load", "state": "upstream_failed"}]
    assert sorted((t["task"], t["status"]) for t in run["tasks"]) == [("extract", "succeeded"),
                                                                      ("transform", "failed")]


def test_scheduler_events_one_run_per_dag_retry_superseded_and_schedule_from_the_timetable(replay):
    r = replay().feed(SCHEDULER)
    for dag, status in (("orders_daily", "failed"), ("customers_daily", "succeeded"),
                        ("invoices_hourly", "succeeded")):
        runs = r.get(f"/api/v1/pipelines/prod_airflow/{dag}/runs")["items"]
        assert [x["status"] for x in runs] == [status], dag
        assert r.pipeline(f"prod_airflow/{dag}")["metrics"]["runs_total"] == 1
    [inv_run] = r.get("/api/v1/pipelines/prod_airflow/invoices_hourly/runs")["items"]
    inv = r.get(f"/api/v1/runs/{inv_run['run_id']}")
    assert inv["what_broke"] is None  # the retry of `fetch` succeeded
    assert sorted(t["status"] for t in inv["tasks"]) == ["failed", "succeeded"]
    assert {r.pipeline(f"prod_airflow/{d}")["team"] for d in ("orders_daily", "customers_daily")} == {
        "orders-team", "crm-team"}
    sched = r.pipeline(ORDERS)["schedule"]
    assert "0 0 * * *" in json.dumps(sched) or "00:00" in json.dumps(sched), sched


def _runs_of(events: list[Event]) -> dict[str, list[int]]:
    by: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        by.setdefault(e.run_id, []).append(i)
    return by


def starts_first(events: list[Event], order: list[int]) -> list[Event]:
    """`order` with each run's START moved before its run's other events (they keep their slots)."""
    out = list(order)
    for idxs in _runs_of(events).values():
        pos = sorted(out.index(i) for i in idxs)
        starts = [i for i in idxs if events[i].type is EventType.START]
        rest = [i for i in sorted(idxs, key=out.index) if i not in starts]
        for p, i in zip(pos, starts + rest):
            out[p] = i
    return [events[i] for i in out]


@st.composite
def arrival_orders(draw, events: list[Event]):
    """Any order of the events that keeps each run's START before its end (and its other events)."""
    return starts_first(events, list(draw(st.permutations(range(len(events))))))


def dbt_events() -> list[Event]:
    """A `dbt run` as dbt-ol reports it: the run's own START and FAIL, and each model a task run of it,
    built with the real openlineage-python classes."""
    from openlineage.client.event_v2 import Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run, output_statistics_output_dataset, parent_run
    from openlineage.client.serde import Serde
    parent_id, t0 = "01a2340d-0c00-7000-8000-00000000d0d0", "2026-12-03T06:00:0{}+00:00"
    parent = {"parent": parent_run.ParentRunFacet(
        run=parent_run.Run(runId=parent_id), job=parent_run.Job(namespace="dbt_prod", name="dbt-run-shop"))}

    def ev(state, sec, run_id, name, facets=None, rows=None):
        outs = [OutputDataset(namespace="postgres://wh", name=name, outputFacets={
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=rows)})] if rows is not None else []
        body = Serde.to_json(RunEvent(eventType=state, eventTime=t0.format(sec), run=Run(runId=run_id,
                                      facets=facets or {}), job=Job(namespace="dbt_prod", name=name),
                                      producer="https://github.com/OpenLineage/OpenLineage/tree/1.54.0/"
                                               "integration/dbt", outputs=outs))
        return openlineage.parse(body.encode(), 0.0)[0]
    m1, m2, m3 = (f"01a2340d-0c00-7000-8000-00000000d0{i}0" for i in (1, 2, 3))
    err = {**parent, "errorMessage": error_message_run.ErrorMessageRunFacet(
        message='relation "raw.orders" does not exist', programmingLanguage="sql")}
    return [ev(RunState.START, 0, parent_id, "dbt-run-shop"),
            ev(RunState.START, 1, m1, "shop.model.shop.customers", parent),
            ev(RunState.COMPLETE, 2, m1, "shop.model.shop.customers", parent, rows=120),
            ev(RunState.START, 3, m2, "shop.model.shop.orders", parent),
            ev(RunState.FAIL, 4, m2, "shop.model.shop.orders", err),
            ev(RunState.START, 5, m3, "shop.model.shop.payments", parent),
            ev(RunState.FAIL, 6, m3, "shop.model.shop.payments", err),
            ev(RunState.FAIL, 7, parent_id, "dbt-run-shop")]


DBT = dbt_events()


def test_dbt_models_are_tasks_of_the_dbt_run_and_what_broke_is_the_same_rule(replay):
    r = replay(now=max(e.time for e in DBT) + 60).feed(DBT)
    ids = [p["id"] for p in r.get("/api/v1/pipelines")["items"]]
    assert ids == ["dbt_prod/dbt-run-shop"]
    [run] = r.get("/api/v1/pipelines/dbt_prod/dbt-run-shop/runs")["items"]
    assert run["status"] == "failed" and run["rows"] is None  # the models' rows stay on the models
    assert run["what_broke"]["headline"] == (
        'model orders failed: relation "raw.orders" does not exist (and 1 more)')  # dbt's node id, short
    [alert] = r.get("/api/v1/alerts", pipeline="dbt_prod/dbt-run-shop")["items"]
    assert "model orders failed" in alert["summary"]
    assert r.pipeline("dbt_prod/dbt-run-shop")["metrics"]["runs_total"] == 1


def test_a_task_event_first_gives_the_dag_its_owner(replay):
    first_task = next(e for e in SCHEDULER if e.parent is not None and "orders_daily" in e.pipeline)
    r = replay().feed([first_task])
    assert r.pipeline(ORDERS)["team"] == "orders-team"
    [run] = r.get(f"/api/v1/pipelines/{ORDERS}/runs")["items"]
    assert (run["status"], run["pending"]) == ("running", True)
    assert r.pipeline(ORDERS)["metrics"].get("runs_total", 0) == 0  # a pending run counts in no figure


EXPECTED: dict[str, dict] = {}
SETS = {"scheduler": SCHEDULER, "dags_test": DAGS_TEST, "dbt": DBT}


def snapshot_of(replay, name: str, events: list[Event]) -> dict:
    if name not in EXPECTED:
        done = replay(f"{name}_in_order", now=max(e.time for e in events) + 60).feed(events)
        EXPECTED[name] = done.snapshot()
    return EXPECTED[name]


@pytest.mark.parametrize("name", sorted(SETS))
def test_newest_first_gives_the_same_runs_figures_and_alerts(replay, name):
    """The hardest order: every parent's end before its tasks' events (each run's START still first)."""
    events = SETS[name]
    expected = snapshot_of(replay, name, events)
    newest_first = starts_first(events, sorted(range(len(events)), key=lambda i: -events[i].time))
    got = replay(f"{name}_newest_first", now=max(e.time for e in events) + 60).feed(newest_first).snapshot()
    assert got == expected


@pytest.mark.parametrize("name", sorted(SETS))
@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_arrival_order_gives_the_same_runs_figures_and_alerts(replay, name, data):
    events = SETS[name]
    expected = snapshot_of(replay, name, events)
    assert expected["runs"] and expected["figures"] and expected["alerts"]  # something to compare
    shuffled = data.draw(arrival_orders(events))
    got = replay(f"{name}_shuffled", now=max(e.time for e in events) + 60).feed(shuffled).snapshot()
    assert got == expected


def test_a_dag_on_midnight_with_no_config_is_late_when_its_run_is_missing(replay):
    customers = [e for e in SCHEDULER if "customers_daily" in e.pipeline]
    r = replay().feed(customers)
    assert r.pipeline("prod_airflow/customers_daily")["state"] == "healthy"
    p = _missing_next_day(r)  # the next run (for 2026-12-03, due at 2026-12-04 00:00 UTC) never comes
    assert p["state"] == "late", p
    [alert] = r.get("/api/v1/alerts", pipeline="prod_airflow/customers_daily")["items"]
    assert (alert["kind"], alert["team"]) == ("late", "crm-team")


def _missing_next_day(r: Replay) -> dict:
    for hour in range(1, 30):
        r.clock.set(datetime(2026, 12, 4, 0, tzinfo=UTC).timestamp() + hour * 3600)
        r.pm.writer.tick()
    return r.pipeline("prod_airflow/customers_daily")


def test_a_config_schedule_overrides_the_timetable(replay):
    weekly = loads('pipelines:\n  - match: "prod_airflow/customers_daily"\n    schedule: "0 0 * * 0"\n')
    customers = [e for e in SCHEDULER if "customers_daily" in e.pipeline]
    p = _missing_next_day(replay(config=weekly).feed(customers))  # 2026-12-04 is a Friday: nothing owed
    assert p["state"] == "healthy", p


def test_a_manual_dag_is_never_late(replay):
    customers = [msgspec.structs.replace(e, schedule=MANUAL_SCHEDULE, schedule_tz=None)
                 for e in SCHEDULER if "customers_daily" in e.pipeline]
    p = _missing_next_day(replay().feed(customers))
    assert p["state"] == "healthy", p


def test_the_timetable_schedule_survives_a_restart(replay):
    customers = [e for e in SCHEDULER if "customers_daily" in e.pipeline]
    first = replay("restart").feed(customers)
    first.pm.writer.stop()  # a clean stop checkpoints the engine's state
    first.close()
    again = replay("restart", now=first.clock.now())
    again.pm.writer.tick()  # loads the checkpoint
    schedule = again.pm.health.judge.detect.schedule("prod_airflow/customers_daily")
    assert schedule is not None and schedule.source.value == "declared"
    assert "00:00" in schedule.describe(), schedule.describe()
    assert _missing_next_day(again)["state"] == "late"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_the_notification_a_team_receives_says_what_broke(tmp_path, receiver):
    """Through the real front door (POST /api/v1/lineage) and a real webhook delivery to a local receiver."""
    from tests.alerting.harness import Harness
    cfg = f"""
receivers:
  - name: orders
    webhook: {{url: "{receiver.url}/orders"}}
route:
  receiver: orders
  group_by: [team, pipeline]
  group_wait: 0s
"""
    hs = Harness(f"sqlite:///{tmp_path}/n.db", cfg, max(e.time for e in DAGS_TEST) + 5)
    try:
        for line in (FIXTURES / "dags_test_orders.jsonl").read_text().splitlines():
            r = hs.client.post("/api/v1/lineage", content=line, headers={"content-type": "application/json"})
            assert r.status_code in (200, 201), r.text
        hs.settle()
        [note] = receiver.on("/orders")
        [alert] = note["body"]["alerts"]
        assert alert["labels"]["team"] == "orders-team"
        assert "transform failed: ValueError: bad row in orders: id=42" in alert["annotations"]["summary"]
        assert alert["annotations"]["error"] == "bad row in orders: id=42"  # the failing task's own
        assert alert["annotations"]["failed_task"] == f"{ORDERS}.transform"
    finally:
        hs.close()


def test_pipemon_replay_of_a_midnight_dag_with_no_schedule_configured_pages_it_late(tmp_path):
    """`pipemon replay` (replay.py: the clock follows the events, then runs on to `until`)."""
    import io

    from pipemon.replay import replay as run_replay
    cfg = loads('receivers:\n  - name: all\n    webhook: {url: "http://127.0.0.1:9/x"}\n'
                'route:\n  receiver: all\n  group_wait: 0s\n')
    lines = [ln for ln in (FIXTURES / "scheduler.jsonl").read_bytes().splitlines()
             if b"customers_daily" in ln]
    out = io.StringIO()
    until = datetime(2026, 12, 5, 0, tzinfo=UTC).timestamp()
    result = run_replay(cfg, io.BytesIO(b"\n".join(lines)), out, until=until, tick=600, db_dir=str(tmp_path))
    assert result.events == len(lines)
    sent = [json.loads(x) for x in out.getvalue().splitlines()]
    late = [(n["time"], a["team"]) for n in sent for a in n["alerts"] if a["kind"] == "late"]
    assert late and late[0][1] == "crm-team", sent
    assert "2026-12-04T00:00" < late[0][0] < "2026-12-04T12:00", late  # past the 00:00 run's deadline
