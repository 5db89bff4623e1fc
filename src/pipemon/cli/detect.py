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
    """Run the detectors over a run history, the clock following the records, and write flags."""
    from rich.console import Console

    from pipemon.backtest import backtest

    with input.open("rb") as runs, output.open("w") as out:
        decl = pipelines.open("rb") if pipelines is not None else None
        try:
            stats = backtest(runs, out, decl, sensitivity, fmt)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--pipelines") from None
        finally:
            if decl is not None:
                decl.close()
    Console(stderr=True).print(
        f"[bold]{stats.records:,}[/] records, [bold]{stats.findings:,}[/] flags -> {output}   "
        f"detectors {stats.detect_s:.2f} s CPU = [bold]{stats.records_per_s:,.0f}[/] records/s; "
        f"reading {stats.parse_s:.2f} s")
