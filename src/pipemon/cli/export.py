"""`pipemon export runs`: a server's run history as the JSON lines `pipemon detect` reads (backtest.py)."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import typer

from pipemon.cli import TokenOption, UrlOption, app
from pipemon.cli.progress import progress
from pipemon.cli.status import api_get

export_app = typer.Typer(no_args_is_help=True, help="Write what a server holds in the formats other commands "
                                                     "read.")
app.add_typer(export_app, name="export")


def parse_since(text: str, now: float) -> datetime:
    """An ISO time (no zone: UTC) or a span back from now (30d, 12h, 1w)."""
    from pipemon.config import parse_duration

    try:
        d = datetime.fromisoformat(text)
        return d if d.tzinfo else d.replace(tzinfo=timezone.utc)
    except ValueError:
        pass
    try:
        return datetime.fromtimestamp(now - parse_duration(text), timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise typer.BadParameter(f"{text!r} is neither an ISO time (2026-11-01T00:00:00Z) nor a span back "
                                 "from now (30d, 12h)", param_hint="--since") from None


def run_line(run: dict) -> dict | None:
    """A run of the API as a line of `pipemon detect`'s input; None for a run with no time at all."""
    ts = run.get("started_at") or run.get("ended_at")
    if ts is None:
        return None
    line = {"pipeline_id": run["pipeline"], "run_id": run["run_id"], "ts": ts,
            "duration_s": run.get("duration_s"), "rows": run.get("rows"), "bytes": run.get("bytes"),
            "status": run["status"]}
    return {k: v for k, v in line.items() if v is not None}


def _pipelines(url: str, token: str | None, team: str | None) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = api_get(url, token, "/api/v1/pipelines", {"team": team, "limit": 1000, "cursor": cursor})
        ids += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return ids


@export_app.command("runs")
def export_runs(pipeline: list[str] | None = typer.Option(None, "--pipeline", "-p",
                                                         help="namespace/name (repeatable); default: every "
                                                              "pipeline the token sees."),
                team: str | None = typer.Option(None, help="Only this team's pipelines."),
                since: str | None = typer.Option(None, help="Runs started since: an ISO time or a span back "
                                                            "from now (30d, 12h)."),
                file: Path | None = typer.Option(None, "--file", "-f", dir_okay=False,
                                                 help="Write here instead of stdout."),
                url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Runs as JSON lines in start order, the input of `pipemon detect`: pipeline_id, run_id, ts,
    duration_s, rows, bytes, status. Runs still going are written with status running (detect skips
    them)."""
    import time

    after = parse_since(since, time.time()).isoformat() if since else None
    ids = list(pipeline) if pipeline else _pipelines(url, token, team)
    lines: list[tuple[float, dict]] = []
    with progress() as bars:
        meter = bars.add("exporting", len(ids), "pipelines")
        for pid in ids:
            cursor = None
            while True:
                page = api_get(url, token, f"/api/v1/pipelines/{quote(pid, safe='')}/runs",
                               {"limit": 1000, "cursor": cursor, "since": after})
                for run in page["items"]:
                    line = run_line(run)
                    if line is not None:
                        lines.append((datetime.fromisoformat(line["ts"]).timestamp(), line))
                cursor = page["next_cursor"]
                if not cursor:
                    break
            meter.advance()
    lines.sort(key=lambda x: x[0])  # stable: a pipeline's runs with one start keep the API's order
    out = file.open("w") if file is not None else sys.stdout
    try:
        for _, line in lines:
            out.write(json.dumps(line) + "\n")  # ASCII: nothing in it can act on a terminal
    finally:
        if file is not None:
            out.close()
    typer.echo(f"{len(lines):,} runs of {len(ids):,} pipelines" + (f" -> {file}" if file else ""), err=True)
