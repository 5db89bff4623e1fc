"""A failure's alert and notification carry what the job printed last: a native event's `log`, a ping's body,
an OpenLineage `errorMessage.stackTrace` (its last 8 KB kept, credentials masked, the last lines shown)."""
from __future__ import annotations

import json

import pytest

from tests.alerting.harness import Harness, at
from tests.alerting.receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def harness(tmp_path, receiver) -> Harness:
    cfg = (f'receivers:\n  - name: ops\n    webhook: {{url: "{receiver.url}/ops"}}\n'
           "route:\n  receiver: ops\n  group_wait: 0s\n")
    return Harness(f"sqlite:///{tmp_path}/o.db", cfg, at(1, 0))


OUTPUT = "".join(f"step {i} ok\n" for i in range(2000)) + (
    "connecting to postgresql://etl:hunter2@db.internal/prod\nERROR: relation \"orders\" does not exist\n")


def test_a_native_failure_shows_the_end_of_its_output_masked(tmp_path, receiver):
    hs = harness(tmp_path, receiver)
    try:
        hs.clock.set(at(1, 1))
        hs.post([{"pipeline": "etl/orders", "run_id": "1", "type": "START", "event_time": at(1, 0)},
                 {"pipeline": "etl/orders", "run_id": "1", "type": "FAIL", "event_time": at(1, 1),
                  "error": "exit code 3", "log": OUTPUT}])
        hs.settle()
        [note] = receiver.wait("/ops", 1)
        [a] = note["body"]["alerts"]
        out = a["annotations"]["output"]
        assert out.splitlines()[-1] == 'ERROR: relation "orders" does not exist'
        assert len(out.splitlines()) == 12 and "step 1999 ok" in out and "step 1980 ok" not in out
        assert "hunter2" not in json.dumps(note["body"]) and "etl:<redacted>@db.internal" in out
        assert out in a["annotations"]["description"]  # in the body every channel shows
        [api] = hs.alerts(pipeline="etl/orders")
        assert api["output"] == out
        [run] = hs.client.get("/api/v1/pipelines/etl%2Forders/runs").json()["items"]
        assert len(run["log_excerpt"]) <= 8192 and run["log_excerpt"].endswith("does not exist\n")
    finally:
        hs.close()


def test_an_openlineage_stack_trace_is_kept_to_8kb_and_its_last_lines_shown(tmp_path, receiver):
    frames = "".join(f'  File "/app/job.py", line {i}, in step_{i}\n    step_{i + 1}()\n' for i in range(400))
    trace = "Traceback (most recent call last):\n" + frames + "KeyError: 'customer_id'\n"
    assert len(trace) > 20_000
    ev = {"eventType": "FAIL", "eventTime": "2026-11-02T01:01:00Z", "producer": "https://example.com/job",
          "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json",
          "job": {"namespace": "spark", "name": "orders"},
          "run": {"runId": "01a2340d-0c00-7000-8000-000000000001",
                  "facets": {"errorMessage": {"message": "'customer_id'", "programmingLanguage": "python",
                                              "stackTrace": trace}}}}
    hs = harness(tmp_path, receiver)
    try:
        hs.clock.set(at(1, 1, 30))
        r = hs.client.post("/api/v1/lineage", json=ev)
        assert r.status_code in (200, 201), r.text
        hs.settle()
        [note] = receiver.wait("/ops", 1)
        [a] = note["body"]["alerts"]
        assert a["annotations"]["summary"] == "spark/orders failed: 'customer_id'"
        assert a["annotations"]["error"] == "'customer_id'"
        lines = a["annotations"]["output"].splitlines()
        assert lines[-1] == "KeyError: 'customer_id'" and len(lines) == 12
        [run] = hs.client.get("/api/v1/pipelines/spark%2Forders/runs").json()["items"]
        kept = run["log_excerpt"]
        assert 8000 < len(kept) <= 8192 and kept.endswith("KeyError: 'customer_id'")
    finally:
        hs.close()


def test_pipemon_show_prints_the_output_of_a_failed_run_without_tasks(tmp_path):
    """A real `pipemon serve`; `pipemon show` reads it over HTTP."""
    import httpx
    from typer.testing import CliRunner

    from pipemon.cli import app as cli
    from tests.conftest import LiveServer

    server = LiveServer(f"sqlite:///{tmp_path}/s.db", tmp_path).start()
    try:
        body = (b"[bold]not markup[/]\n" * 3) + b"rsync: connection unexpectedly closed\n"
        r = httpx.post(server.url + "/ping/backups/nightly/12", content=body, timeout=10)
        assert r.status_code == 200, r.text
        show = CliRunner().invoke(cli, ["show", "backups/nightly", "--url", server.url],
                                  env={"COLUMNS": "200"})
        assert show.exit_code == 0, show.output
        out = show.output
        assert "(last lines):" in out and out.rstrip().endswith("rsync: connection unexpectedly closed")
        assert out.count("[bold]not markup[/]") == 3  # printed literally
    finally:
        server.stop()
