"""Reporting runs from the shell: `pipemon send` and `pipemon run -- COMMAND` (for cron jobs)."""
from __future__ import annotations

import collections
import subprocess
import sys
import time
import uuid

import typer

from pipemon.cli import TokenOption, UrlOption, app
from pipemon.model import EventWord

LOG_TAIL = 10_240


@app.command()
def send(pipeline: str = typer.Argument(..., help="namespace/name"),
         status: EventWord = typer.Option(EventWord.SUCCESS, case_sensitive=False,
                                          help="What happened: the API's event types and the pings' words."),
         run_id: str | None = typer.Option(None, help="The run's id (default: a new one, or the open run)."),
         duration: float | None = typer.Option(None, help="Seconds the run took (for a finished run)."),
         rows: float | None = typer.Option(None, help="Rows written."),
         bytes_: float | None = typer.Option(None, "--bytes", help="Bytes written."),
         error: str | None = typer.Option(None, help="Error message (for a failure)."),
         team: str | None = typer.Option(None, help="Owning team."),
         url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Report one run event."""
    from pipemon.client import Client, _split

    try:
        _split(pipeline)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="PIPELINE") from None
    etype = status.event_type
    if duration is not None and not etype.is_terminal:
        raise typer.BadParameter("only a finished run has a duration", param_hint="--duration")
    metrics = {k: v for k, v in (("rows", rows), ("bytes", bytes_)) if v is not None}
    with Client(url, token) as client:
        ok = client.event(pipeline, etype.value,
                          run_id or (str(uuid.uuid4()) if duration is not None else None),
                          duration_s=duration, metrics=metrics or None,
                          error={"message": error} if error else None, team=team)
    if not ok:
        raise typer.Exit(1)
    typer.echo(f"sent {status.value} for {pipeline}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(ctx: typer.Context,
        pipeline: str = typer.Argument(..., help="namespace/name"),
        url: str = UrlOption, token: str | None = TokenOption,
        team: str | None = typer.Option(None, help="Owning team.")) -> None:
    """Run COMMAND and report it: start, then success or failure with exit code, duration and output tail.

    pipemon run billing/nightly -- ./nightly.sh --full

    The command's exit code is passed through; a pipemon that is down never stops the command."""
    from pipemon.client import Client, _split

    command = list(ctx.args)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise typer.BadParameter("give the command after --", param_hint="COMMAND")
    try:
        _split(pipeline)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="PIPELINE") from None
    run_id = str(uuid.uuid4())
    with Client(url, token) as client:
        client.event(pipeline, "START", run_id, team=team)
        tail: collections.deque[str] = collections.deque()
        size = 0
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace", bufsize=1)
        except OSError as e:
            client.event(pipeline, "FAIL", run_id,
                         error={"message": f"cannot start {command[0]!r}: {e.strerror}", "type": "ExitCode"},
                         team=team)
            typer.secho(f"cannot start {command[0]!r}: {e.strerror}", fg=typer.colors.RED, err=True)
            raise typer.Exit(127) from None
        assert proc.stdout is not None
        for line in proc.stdout:  # tee: the user sees the output live, we keep its tail
            sys.stdout.write(line)
            tail.append(line)
            size += len(line)
            while size > LOG_TAIL and len(tail) > 1:
                size -= len(tail.popleft())
        code = proc.wait()
        elapsed = time.monotonic() - t0
        log = "".join(tail)[-LOG_TAIL:]
        if code == 0:
            client.event(pipeline, "COMPLETE", run_id, log=log, team=team, metrics={"exit_code": 0})
        else:
            client.event(pipeline, "FAIL", run_id, log=log, team=team, metrics={"exit_code": code},
                         error={"message": f"exit code {code}", "type": "ExitCode"})
        typer.echo(f"pipemon: {pipeline} {'succeeded' if code == 0 else f'failed (exit {code})'} "
                   f"in {elapsed:.1f}s", err=True)
    raise typer.Exit(code)
