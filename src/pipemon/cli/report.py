"""Reporting runs from the shell: `pipemon send` and `pipemon run -- COMMAND` (for cron jobs)."""
from __future__ import annotations

import uuid

import typer

from pipemon.cli import TokenOption, UrlOption, app
from pipemon.model import EventWord


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

    The command's exit code is passed through; a pipemon that is down never stops the command. The tail
    is the last 4 KB of output (stdout and stderr), secrets redacted. The light client's `pipemon-run`
    is the same command without the server installed."""
    from pipemon_client.sdk import Client, split_pipeline
    from pipemon_client.wrapper import run_command

    command = list(ctx.args)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise typer.BadParameter("give the command after --", param_hint="COMMAND")
    try:
        split_pipeline(pipeline)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="PIPELINE") from None
    try:
        client = Client(url, token)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--url") from None
    with client:
        code = run_command(client, pipeline, command, team=team)
    raise typer.Exit(code)
