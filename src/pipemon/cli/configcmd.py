"""`pipemon config check [FILE] [--config-dir DIR]`: validate a configuration without starting anything."""
from __future__ import annotations

import typer

from pipemon.cli import app

config_app = typer.Typer(no_args_is_help=True, help="Configuration files.")
app.add_typer(config_app, name="config")


@config_app.command("check")
def check(path: str = typer.Argument(None, help="pipemon.yaml (the main file)"),
          config_dir: str = typer.Option(None, "--config-dir", help="A directory of team files (config.d/)")
          ) -> None:
    """Validate the main file and every team file (its --config-dir and its include: globs). Every problem
    is printed at once with its file:line and key; receivers no route uses are warnings. Exit 1 when
    anything is invalid."""
    from pipemon.cli.text import escaped
    from pipemon.config import unused_receivers
    from pipemon.teamconfig import ConfigSource

    if path is None and config_dir is None:
        typer.secho("give the main file, --config-dir, or both", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    loaded = ConfigSource(path, config_dir).read()
    for p in loaded.main_problems:
        typer.secho(escaped(str(p)), fg=typer.colors.RED, err=True)  # it may quote the file
    if loaded.settings is None:
        raise typer.Exit(1)
    for s in sorted(loaded.statuses.values(), key=lambda s: (s.team, s.file)):
        for p in s.problems:
            typer.secho(escaped(str(p)), fg=typer.colors.RED, err=True)  # it may quote the file
    for name in unused_receivers(loaded.settings):
        warning = f"warning: receiver {name!r} is not used by any route or escalation policy"
        typer.secho(escaped(warning), fg=typer.colors.YELLOW, err=True)
    if not loaded.ok:
        raise typer.Exit(1)
    teams = f", {len(loaded.statuses)} team files" if loaded.statuses else ""
    typer.echo(f"{path or config_dir}: OK ({len(loaded.settings.pipelines)} pipeline rules{teams})")
