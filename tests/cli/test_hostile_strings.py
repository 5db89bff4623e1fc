"""Stored text is text: hostile strings sent through the real front doors of a real server come back
literally from every command that prints them (markup and emoji codes as typed, control characters escaped,
10 KB lines cut in tables and whole in json, right-to-left text isolated), and every command exits 0."""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from typer.testing import CliRunner

from pipemon.cli import app
from tests.alerting.receiver import Receiver
from tests.conftest import LiveServer

MARKUP = "OSError: could not read input [/data/in/orders.csv] [bold red]boom[/]"
EMOJI = "schema:snowflake://warehouse :thumbs_up:"
ANSI = "\x1b[31mRED\x1b[0m\x1b]0;pwned\x07 bell\x07 cr\r c1\x9b"
RTL = "שגיאה: הקובץ חסר مرحبا"
LONG = "L" * 10_240
TEAM = "[bold]data[/] :fire:"
RECEIVER = "[red]rx :fire:"  # no "/": a receiver's name is one segment of the API's paths
P_MARKUP = "hostile/[bold red]loader[/] :snowflake:"
P_RTL = "hostile/צינור-הזמנות"
P_LONG = "hostile/long"
P_FOUND = "hostile/[i]volume[/i] :chart:"
OL_JOB = ("snowflake://acct", "schema:snowflake:orders")
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")  # never sent raw to the terminal
ESCAPED_ANSI = "\\x1b[31mRED\\x1b[0m\\x1b]0;pwned\\x07 bell\\x07"  # one-line reasons lose the \\r
ENV = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "COLUMNS": None, "NO_COLOR": "1"}


def cli(*args: str):
    res = CliRunner().invoke(app, list(args), env=ENV)
    assert not RAW_CONTROL.search(res.stdout), f"raw control character in the output of {args}"
    assert not RAW_CONTROL.search(res.stderr), f"raw control character on stderr of {args}"
    return res


def ok(*args: str) -> str:
    res = cli(*args)
    assert res.exit_code == 0, (args, res.stdout, res.stderr, res.exception)
    return res.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    rec = Receiver()
    cfg = tmp / "pipemon.yaml"
    cfg.write_text(f"""
receivers:
  - name: "{RECEIVER}"
    webhook: {{url: "{rec.url}/rx"}}
route:
  receiver: "{RECEIVER}"
  group_wait: 0s
""")
    srv = LiveServer(f"sqlite:///{tmp / 'p.db'}", tmp, str(cfg)).start(timeout=60)  # a loaded machine is slow
    now = time.time()
    native = [
        {"pipeline": P_MARKUP, "run_id": "1", "type": "START", "event_time": now - 60, "team": TEAM},
        {"pipeline": P_MARKUP, "run_id": "1", "type": "FAIL", "event_time": now - 30, "team": TEAM,
         "error": f"{MARKUP} {ANSI} {EMOJI}"},
        {"pipeline": P_RTL, "run_id": "1", "type": "FAIL", "event_time": now - 30, "duration_s": 5,
         "team": TEAM, "error": RTL},
        {"pipeline": P_LONG, "run_id": "1", "type": "FAIL", "event_time": now - 30, "duration_s": 5,
         "team": TEAM, "error": LONG},
    ]
    # a volume anomaly, for a finding: 39 ordinary daily runs, then one with no rows
    native += [{"pipeline": P_FOUND, "run_id": f"r{k}", "type": "COMPLETE",
                "event_time": now - (40 - k) * 86400, "duration_s": 600,
                "rows": 0 if k == 39 else 1e6 + k * 10, "team": TEAM} for k in range(40)]
    assert httpx.post(srv.url + "/api/v1/events", json=native).status_code == 200
    ol = {"eventType": "FAIL", "eventTime": "2026-12-01T00:00:00Z", "producer": "https://example.com/x",
          "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent",
          "run": {"runId": str(uuid.uuid4()), "facets": {"errorMessage": {
              "_producer": "x", "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/ErrorMessageRunFacet.json",
              "message": EMOJI, "programmingLanguage": "python"}}},
          "job": {"namespace": OL_JOB[0], "name": OL_JOB[1]},
          "outputs": [{"namespace": "snowflake://acct", "name": EMOJI}]}
    assert httpx.post(srv.url + "/api/v1/lineage", json=ol).status_code in (200, 201), "lineage refused"
    ping = httpx.post(srv.url + f"/ping/hostile/{quote('ping :fire: [b]x[/b]', safe='')}/fail", content=ANSI)
    assert ping.status_code == 200, ping.text
    rec.wait("/rx", 3)
    deadline = time.monotonic() + 20
    while not httpx.get(srv.url + "/api/v1/findings").json()["items"] and time.monotonic() < deadline:
        time.sleep(0.2)
    yield srv
    srv.stop()
    rec.close()


def test_status_table_json_and_csv(server):
    out = ok("status", "--url", server.url)
    for s in (P_MARKUP, TEAM, MARKUP, EMOJI, ESCAPED_ANSI, P_FOUND, "hostile/ping :fire: [b]x[/b]"):
        assert s in out, s
    assert f"\u2068{P_RTL}\u2069" in out and RTL in out  # isolated: cannot reorder the row
    assert "L" * 100 in out and "L" * 250 not in out and "…" in out  # 10 KB cut in the table
    data = json.loads(ok("status", "--url", server.url, "--output", "json"))
    errors = [(p.get("last_run") or {}).get("error") for p in data]
    assert LONG in errors and any(e and MARKUP in e and "\x1b[31m" in e for e in errors)  # whole in json
    rows = ok("status", "--url", server.url, "--output", "csv").splitlines()
    assert rows[0] == "pipeline,team,state,since,reason,last run,duration,rows"
    assert any(ESCAPED_ANSI in r for r in rows) and any(P_MARKUP in r for r in rows)


def test_show(server):
    for pipeline, expected in ((P_MARKUP, [P_MARKUP, TEAM, MARKUP, ESCAPED_ANSI]), (P_RTL, [RTL]),
                               (P_LONG, ["L" * 100 + "…"]), ("/".join(OL_JOB), [EMOJI]),
                               (P_FOUND, [P_FOUND])):
        out = ok("show", pipeline, "--url", server.url)
        for s in expected:
            assert s in out, (pipeline, s)


def test_alerts_ack_and_resolve(server):
    out = ok("alerts", "--url", server.url)
    for s in (P_MARKUP, TEAM, MARKUP, ESCAPED_ANSI, P_FOUND, RTL):
        assert s in out, s
    alerts = json.loads(ok("alerts", "--url", server.url, "--output", "json"))
    assert any(a["pipeline"] == P_MARKUP and "\x1b[31m" in a["summary"] for a in alerts)
    assert ok("alerts", "--url", server.url, "--output", "csv").startswith(
        "id,severity,state,team,pipeline,kind,since,n,summary,attached\n")
    aid = next(a["id"] for a in alerts if a["pipeline"] == P_MARKUP)
    out = ok("ack", str(aid), "--by", TEAM, "--url", server.url)
    assert MARKUP in out and ESCAPED_ANSI in out
    assert MARKUP in ok("resolve", str(aid), "--url", server.url)


def test_silences(server):
    comment = f"{MARKUP} {ANSI} {RTL} {EMOJI} {LONG[:1500]}"  # the API takes 2,000 characters
    out = ok("silence", "add", "-m", f'team="{TEAM}"', "--comment", comment, "--author", TEAM,
             "--url", server.url)
    assert TEAM in out
    for args in ((), ("--all",)):
        out = ok("silence", "list", *args, "--url", server.url)
        for s in (TEAM, MARKUP, ESCAPED_ANSI, RTL, EMOJI, "LLL…"):
            assert s in out, s
        assert LONG[:1500] not in out
    [s] = json.loads(ok("silence", "list", "--url", server.url, "--output", "json"))
    assert s["comment"] == comment  # whole, control characters and all (JSON escapes them)
    rows = ok("silence", "list", "--url", server.url, "--output", "csv").splitlines()
    assert rows[0] == "id,state,matchers,ends,by,comment"
    assert LONG[:1500] in rows[1] and ESCAPED_ANSI in rows[1]


def test_notifications_findings_and_receivers(server):
    out = ok("notifications", "--url", server.url)
    assert RECEIVER in out and P_MARKUP in out
    sent = json.loads(ok("notifications", "--url", server.url, "-o", "json"))
    assert any(n["receiver"] == RECEIVER for n in sent)
    out = ok("findings", "--url", server.url)
    assert P_FOUND in out and "rows 0 on a successful run" in out
    assert ok("findings", "--url", server.url, "-o", "csv").splitlines()[1].split(",")[2] == P_FOUND
    assert RECEIVER in ok("receivers", "test", RECEIVER, "--url", server.url)


def test_errors_from_the_server_are_escaped(server):
    res = cli("show", f"hostile/{ANSI}{MARKUP}", "--url", server.url)
    assert res.exit_code == 1 and "404" in res.stderr and "\\x1b[31m" in res.stderr


def test_export_runs_and_detect(server, tmp_path: Path):
    runs = tmp_path / "runs.jsonl"
    ok("export", "runs", "--url", server.url, "--file", str(runs))
    lines = [json.loads(x) for x in runs.read_text().splitlines()]
    assert {P_MARKUP, P_RTL, P_FOUND} <= {x["pipeline_id"] for x in lines}
    flags = tmp_path / "flags.jsonl"
    res = cli("detect", "-i", str(runs), "-o", str(flags))
    assert res.exit_code == 0, res.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(runs.read_text() + json.dumps({"pipeline_id": ANSI + MARKUP, "ts": "soon"}) + "\n")
    res = cli("detect", "-i", str(bad), "-o", str(flags))
    assert res.exit_code == 1 and f"line {len(lines) + 1}:" in res.stderr


def test_replay_summary(tmp_path: Path):
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(f'receivers:\n  - name: "{RECEIVER}"\n    webhook: {{url: "http://127.0.0.1:9/x"}}\n'
                   f'route:\n  receiver: "{RECEIVER}"\n')
    events = tmp_path / "events.jsonl"
    t = 1_790_000_000
    events.write_text("".join(json.dumps(e) + "\n" for k in range(3) for e in (
        {"pipeline": P_MARKUP, "run_id": str(k), "type": "START", "event_time": t + k * 3600, "team": TEAM},
        {"pipeline": P_MARKUP, "run_id": str(k), "type": "FAIL", "event_time": t + k * 3600 + 60,
         "team": TEAM, "error": f"{MARKUP} {ANSI}"})))
    out = ok("replay", "-c", str(cfg), "-i", str(events), "--summary")
    assert TEAM in out and RECEIVER in out


def test_config_check_prints_config_strings_literally(tmp_path: Path):
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text('"[bold]key[/] :fire: \\e[31m": 1\n')
    res = cli("config", "check", str(cfg))
    assert res.exit_code == 1 and "[bold]key[/] :fire:" in res.stderr
