"""The backtest: the clock follows the records, nothing is known before it happened; the CLI."""
from __future__ import annotations

import io
import json
from pathlib import Path

from typer.testing import CliRunner

from pipemon.backtest import InputFormat, backtest, drive, read_lines, run_events
from pipemon.cli import app
from pipemon.engine.detect import DetectorSuite, Finding, RunStatus
from pipemon.engine.detect.feed import feed_blocks
from tests.detect._data import DAY, HOUR, T0, daily, hourly, series


def runs_jsonl() -> bytes:
    runs = series(daily(60), rows=lambda t: 1e6, duration=lambda t: 1800.0)
    runs[45].start += 7 * HOUR  # one late run
    runs[50].rows = 0.0  # one silent failure
    runs[55].duration_s = 12 * HOUR  # one run far too long
    lines = [{"pipeline_id": "p", "run_id": r.run_id, "ts_unix": r.start, "duration_s": r.duration_s,
              "rows": r.rows, "status": "success"} for r in runs]
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


class Spy:
    """Checks the clock's promises while the backtest drives it. (A wrapper, not a subclass: the suite may
    be compiled by mypyc, and interpreted classes cannot inherit from compiled ones.)"""

    def __init__(self) -> None:
        self.suite = DetectorSuite()
        self.observe_start, self.next_due = self.suite.observe_start, self.suite.next_due

    def tick(self, now: float) -> list[Finding]:
        found = self.suite.tick(now)
        assert all(f.time <= now for f in found), "an alarm from the future"
        return found

    def observe_completion(self, pipeline_id: str, run_id: str, start: float, status: RunStatus,
                           duration_s: float | None, rows: float | None, bytes_: float | None,
                           now: float) -> list[Finding]:
        assert duration_s is None or now >= start + duration_s, "a duration known before the end"
        return self.suite.observe_completion(pipeline_id, run_id, start, status, duration_s, rows, bytes_,
                                             now)


class Blind(Spy):
    """The suite as a live engine drives it: a start says nothing of when its run will end."""

    def __init__(self) -> None:
        super().__init__()
        self.observe_start = self.start_blind

    def start_blind(self, pipeline_id: str, run_id: str, start: float, now: float,
                    nominal: float | None = None, ends: float | None = None) -> list[Finding]:
        return self.suite.observe_start(pipeline_id, run_id, start, now, nominal)


def test_known_ends_leave_the_findings_as_they_were() -> None:
    # the backtest tells each start when its run ends, so running-long timers due later are never queued
    lines = read_lines(io.BytesIO(runs_jsonl()))
    told, blind = drive(Spy(), lines, InputFormat.RUNS), drive(Blind(), lines, InputFormat.RUNS)
    assert told == blind and "running_long" in {f.kind.value for f in told}


def test_starts_and_completions_are_merged_in_time_order() -> None:
    lines = read_lines(io.BytesIO(runs_jsonl()))
    times = [t for t, _, _ in run_events(lines)]
    assert times == sorted(times) and len(times) == 2 * len(lines)


def test_the_clock_never_runs_ahead_of_the_records() -> None:
    found = drive(Spy(), read_lines(io.BytesIO(runs_jsonl())), InputFormat.RUNS)
    kinds = sorted(f.kind.value for f in found)
    assert kinds == ["late", "running_long", "volume"]


def test_flags_are_written_in_the_benchmark_format() -> None:
    out = io.StringIO()
    stats = backtest(io.BytesIO(runs_jsonl()), out)
    flags = [json.loads(line) for line in out.getvalue().splitlines()]
    assert stats.records == 60 and stats.findings == len(flags) == 3
    assert all(set(f) == {"pipeline_id", "ts", "ts_unix", "score", "metric", "kind", "explanation"} for f in flags)
    assert all(f["ts"].endswith("Z") and f["score"] >= 4.0 for f in flags)


def test_declared_pipelines_and_sensitivity() -> None:
    declared = io.BytesIO(b'{"pipeline_id":"p","cron":"0 2 * * *","interval_s":86400,"schedule":"daily",'
                          b'"eval_start":"x","fp_tol_s":1}\n')  # unknown keys are ignored
    out = io.StringIO()
    backtest(io.BytesIO(runs_jsonl()), out, declared, sensitivity=0.5)
    kinds = sorted(json.loads(line)["kind"] for line in out.getvalue().splitlines())
    assert kinds == ["late", "running_long", "volume"]


def test_cli(tmp_path: Path) -> None:
    runs, flags = tmp_path / "runs.jsonl", tmp_path / "flags.jsonl"
    runs.write_bytes(runs_jsonl())
    res = CliRunner().invoke(app, ["detect", "--input", str(runs), "--output", str(flags)])
    assert res.exit_code == 0, res.output
    assert len(flags.read_text().splitlines()) == 3


def test_cli_series(tmp_path: Path) -> None:
    src, flags = tmp_path / "series.jsonl", tmp_path / "flags.jsonl"
    points = [{"pipeline_id": "cpu", "ts_unix": T0 + k * 300, "value": 50.0 + (k % 5) + (90 if k == 2000 else 0)}
              for k in range(int(DAY // 300) * 8)]
    src.write_text("".join(json.dumps(p) + "\n" for p in points))
    res = CliRunner().invoke(app, ["detect", "-i", str(src), "-o", str(flags), "--format", "series"])
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["ts_unix"] for x in flags.read_text().splitlines()] == [T0 + 2000 * 300]


def test_records_out_of_order_are_put_in_order() -> None:
    lines = runs_jsonl().splitlines(keepends=True)
    shuffled = b"".join(lines[1::2] + lines[0::2])
    out_sorted, out_shuffled = io.StringIO(), io.StringIO()
    backtest(io.BytesIO(runs_jsonl()), out_sorted)
    backtest(io.BytesIO(shuffled), out_shuffled)
    assert out_shuffled.getvalue() == out_sorted.getvalue()


def fleet_jsonl() -> bytes:
    """Five pipelines, each with its own trouble; "quits" stops running two days before the others end, so
    its LATE comes only from the fleet's clock after its own last run."""
    lines = []
    for n, (pid, slots) in enumerate([("a", daily(60)), ("b", daily(60, at_s=2 * HOUR + 60)),
                                      ("c", hourly(40)), ("quits", daily(58, at_s=5 * HOUR)),
                                      ("d", daily(60, at_s=2 * HOUR))]):
        runs = series(slots, rows=lambda t: 1e6, duration=lambda t: 1800.0, seed=n + 1)
        if pid == "a":
            runs[50].rows = 0.0
        if pid == "b":
            runs[55].duration_s = 12 * HOUR
        if pid == "c":
            runs[700].start += 3 * HOUR
        if pid == "d":
            runs[45].status = RunStatus.FAILED
        lines += [{"pipeline_id": pid, "run_id": r.run_id, "ts_unix": r.start, "duration_s": r.duration_s,
                   "rows": r.rows, "status": "failed" if r.status is RunStatus.FAILED else "success"}
                  for r in runs]
    lines.sort(key=lambda x: x["ts_unix"])
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def by_pipeline(found: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in found:
        out.setdefault(f.pipeline_id, []).append(f)
    return out


def test_a_fleet_fed_a_block_at_a_time_finds_what_it_finds_whole() -> None:
    lines = read_lines(io.BytesIO(fleet_jsonl()))
    whole = by_pipeline(drive(DetectorSuite(), lines, InputFormat.RUNS))
    assert {f.kind.value for f in whole["quits"]} >= {"late"}, "the quitter's silence is seen"
    assert {f.kind.value for fs in whole.values() for f in fs} >= {"volume", "running_long", "late"}
    for block in (1, 2, 3):
        assert by_pipeline(feed_blocks(lambda pids: DetectorSuite(), lines, block)) == whole, block


def test_the_written_flags_do_not_depend_on_the_blocks() -> None:
    outs = []
    for block in (1, 2, 1000):
        out = io.StringIO()
        backtest(io.BytesIO(fleet_jsonl()), out, block=block)
        outs.append(out.getvalue())
    flags = [json.loads(x) for x in outs[0].splitlines()]
    assert outs[0] == outs[1] == outs[2] and len(flags) >= 4
    assert [(f["ts_unix"], f["pipeline_id"]) for f in flags] == sorted((f["ts_unix"], f["pipeline_id"]) for f in flags)
