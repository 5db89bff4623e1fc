"""Listing commands against a real server: how many of how many, --all, unwrapped piped output, json and
csv; `send --status` words; `export runs` feeding `detect`."""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pipemon.cli import app
from tests.conftest import LiveServer

ENV = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "COLUMNS": None}
LONG_NAME = "team/" + "a_rather_long_pipeline_name_" * 5  # 145 characters: wider than 80 columns
NOW = time.time()


def run(*args: str, code: int = 0):
    res = CliRunner().invoke(app, list(args), env=ENV)
    assert res.exit_code == code, (args, res.stdout, res.stderr, res.exception)
    return res


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("listing")
    srv = LiveServer(f"sqlite:///{tmp / 'p.db'}", tmp).start(timeout=60)  # a loaded machine is slow
    events = []
    for k in range(25):
        pid = LONG_NAME if k == 0 else f"fleet/p{k:02d}"
        for d in range(3):  # three daily runs each, the last of p01 failed
            failed = k == 1 and d == 2
            events.append({"pipeline": pid, "run_id": f"r{d}", "type": "FAIL" if failed else "COMPLETE",
                           "event_time": NOW - (3 - d) * 86400, "duration_s": 60 + k, "rows": 100 * k,
                           "team": "fleet", **({"error": "disk full"} if failed else {})})
    events.append({"pipeline": "fleet/p02", "run_id": "open", "type": "START", "event_time": NOW - 10})
    assert httpx.post(srv.url + "/api/v1/events", json=events).status_code == 200
    yield srv
    srv.stop()


def test_status_says_how_many_of_how_many(server):
    out = run("status", "--url", server.url, "--limit", "10").stdout
    assert "10 of 25 pipelines; --limit N or --all" in out
    out = run("status", "--url", server.url, "--all").stdout
    assert " of 25" not in out and all(f"fleet/p{k:02d}" in out for k in range(1, 25))
    out = run("status", "--url", server.url).stdout  # 25 is under the default limit: nothing to say
    assert " of 25" not in out
    res = run("status", "--url", server.url, "--limit", "5", "--output", "json")
    assert len(json.loads(res.stdout)) == 5 and "5 of 25 pipelines" in res.stderr
    assert run("status", "--url", server.url, "--state", "failing", "--limit", "1").stdout.count(" of ") == 0


def test_piped_output_is_not_wrapped(server):
    out = run("status", "--url", server.url).stdout
    assert any(LONG_NAME in line for line in out.splitlines())  # one line, not folded at 80 columns
    assert max(len(line) for line in out.splitlines()) > 145


def test_json_is_the_apis_objects_and_csv_the_tables_columns(server):
    api = httpx.get(server.url + "/api/v1/pipelines", params={"limit": 1000}).json()["items"]
    got = json.loads(run("status", "--url", server.url, "--all", "-o", "json").stdout)
    assert sorted(p["id"] for p in got) == sorted(p["id"] for p in api)
    assert set(got[0]) == set(api[0])
    rows = list(csv.reader(io.StringIO(run("status", "--url", server.url, "--all", "-o", "csv").stdout)))
    assert rows[0] == ["pipeline", "team", "state", "since", "reason", "last run", "duration", "rows"]
    by_id = {r[0]: r for r in rows[1:]}
    assert len(by_id) == 25 and by_id["fleet/p01"][2] == "failing" and "disk full" in by_id["fleet/p01"][4]
    assert by_id["fleet/p03"][6] == "63.0" and by_id["fleet/p03"][7] == "300.0"  # numbers whole, not 1.1m
    for cmd in (["alerts"], ["silence", "list"], ["notifications"], ["findings"]):
        assert isinstance(json.loads(run(*cmd, "--url", server.url, "-o", "json").stdout), list)
        assert run(*cmd, "--url", server.url, "-o", "csv").stdout.startswith("id,")
    assert run("alerts", "--url", server.url, "-o", "yaml", code=2).exit_code == 2


def test_send_takes_the_apis_and_the_pings_words(server):
    for word, status in (("failure", "failed"), ("FAIL", "failed"), ("Complete", "succeeded"),
                         ("success", "succeeded"), ("abort", "aborted"), ("cancelled", "aborted")):
        pid = f"words/{word.lower()}"
        run("send", pid, "--status", word, "--duration", "5", "--url", server.url)
        [r] = httpx.get(server.url + f"/api/v1/pipelines/{pid}/runs").json()["items"]
        assert r["status"] == status, word
    res = run("send", "words/x", "--status", "exploded", "--url", server.url, code=2)
    assert "exploded" in res.stderr and "failure" in res.stderr
    # the native door takes the same words
    assert httpx.post(server.url + "/api/v1/events", json={"pipeline": "words/native", "type": "failure",
                                                           "run_id": "1", "duration_s": 3}).status_code == 200
    [r] = httpx.get(server.url + "/api/v1/pipelines/words/native/runs").json()["items"]
    assert r["status"] == "failed"


def test_export_runs_is_the_input_of_detect(server, tmp_path: Path):
    runs = tmp_path / "runs.jsonl"
    res = run("export", "runs", "--url", server.url, "--team", "fleet", "--file", str(runs))
    lines = [json.loads(x) for x in runs.read_text().splitlines()]
    assert len(lines) == 25 * 3 + 1 and "76 runs of 25 pipelines" in res.stderr
    assert [x["ts"] for x in lines] == sorted(x["ts"] for x in lines)  # in start order
    assert {x["status"] for x in lines} == {"succeeded", "failed", "running"}
    assert set(lines[0]) <= {"pipeline_id", "run_id", "ts", "duration_s", "rows", "bytes", "status"}
    one = run("export", "runs", "--url", server.url, "-p", "fleet/p01", "--since", "36h").stdout
    assert [json.loads(x)["run_id"] for x in one.splitlines()] == ["r2"]
    flags = tmp_path / "flags.jsonl"
    res = run("detect", "-i", str(runs), "-o", str(flags))
    assert "75 records" in res.stderr and "1 runs not finished, skipped" in res.stderr
    run("export", "runs", "--url", server.url, "--since", "yesterday-ish", code=2)


def test_detect_reports_a_bad_line_by_its_number(tmp_path: Path):
    good = json.dumps({"pipeline_id": "a/b", "ts": "2026-11-01T00:00:00Z", "status": "success"})
    flags = tmp_path / "flags.jsonl"
    for bad, says in (('{"pipeline_id": "a/b", "ts": "2026-11-02", "status": "exploded"}', "unknown status"),
                      ('{"pipeline_id": "a/b"', "not valid json"), ('{"ts": "2026-11-02"}', "pipeline_id"),
                      ('{"pipeline_id": "a/b", "ts": "soon"}', "soon"),
                      ('{"pipeline_id": "a/b", "ts_unix": "x"}', "ts_unix")):
        src = tmp_path / "runs.jsonl"
        src.write_text(f"{good}\n\n{good}\n{bad}\n{good}\n")
        res = run("detect", "-i", str(src), "-o", str(flags), code=1)
        assert f"{src}: line 4:" in res.stderr and says in res.stderr.lower(), res.stderr
        assert "Traceback" not in res.output
