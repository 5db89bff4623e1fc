"""`pipemon detect`: the anomaly detectors over a recorded run history (a backtest)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipemon.backtest import InputFormat
from pipemon.cli import app


@app.command("detect")
def detect(
    input: Annotated[Path, typer.Option("--input", "-i", exists=True, dir_okay=False,
                                        help="runs.jsonl, or a series JSONL with --format series.")],
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False, help="Flags JSONL to write.")],
    pipelines: Annotated[Path | None, typer.Option(
        "--pipelines", exists=True, dir_okay=False,
        help="Declared schedules (cron, interval_s, timezone, grace_s, max_duration_s) and holiday "
             "calendars (calendar: US, UK, DE ...); without it schedules are learned.")] = None,
    fmt: Annotated[InputFormat, typer.Option("--format", help="The input's shape.")] = InputFormat.RUNS,
    sensitivity: Annotated[float, typer.Option(
        "--sensitivity", min=0.05, max=20.0,
        help="Higher: more alarms (recall); lower: fewer (precision).")] = 1.0,
) -> None:
    """Run the detectors over a run history, the clock following the records, and write flags.

    Input (--format runs): one run a line, in start order (other orders are sorted), e.g.
    {"pipeline_id": "billing/nightly", "run_id": "r1", "ts": "2026-11-26T02:00:00Z",
    "duration_s": 840, "rows": 120000, "bytes": 5.2e7, "status": "success"}
    ts is ISO 8601 (no zone: UTC) or ts_unix is unix seconds; run_id, duration_s, rows and bytes may be
    left out; status is success (the default), failed or aborted (or any word `pipemon send --status`
    takes); a run still start or running is skipped and counted. `pipemon export runs` writes this
    format from a pipemon server.

    --format series: {"pipeline_id", "ts" or "ts_unix", "value"} a line.
    --pipelines: {"pipeline_id", "cron" or "interval_s", "timezone", "grace_s", "max_duration_s"} a line.
    Output: one flag a line, {"pipeline_id", "ts", "ts_unix", "score", "metric", "kind", "explanation"},
    in time order.
    A line that cannot be read is reported by its number (exit 1)."""
    from rich.text import Text

    from pipemon.backtest import BadLine, backtest
    from pipemon.cli.progress import progress
    from pipemon.cli.text import console, echo_error

    with progress() as bars, input.open("rb") as runs, output.open("w") as out:
        def detecting(records: int):
            return bars.add("detecting", records, "runs").set

        decl = pipelines.open("rb") if pipelines is not None else None
        try:
            stats = backtest(bars.lines(runs, input.stat().st_size, "reading"), out, decl, sensitivity, fmt,
                             on_start=detecting)
        except BadLine as e:
            echo_error(f"{pipelines if e.declared else input}: {e}")
            raise typer.Exit(1) from None
        finally:
            if decl is not None:
                decl.close()
    skipped = f"; {stats.skipped:,} runs not finished, skipped" if stats.skipped else ""
    console(stderr=True).print(Text.assemble(
        (f"{stats.records:,}", "bold"), " records, ", (f"{stats.findings:,}", "bold"),
        f" flags -> {output}{skipped}   detectors {stats.detect_s:.2f} s CPU = ",
        (f"{stats.records_per_s:,.0f}", "bold"), f" records/s; reading {stats.parse_s:.2f} s"))
