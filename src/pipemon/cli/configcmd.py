"""`pipemon config check FILE`: validate a configuration without starting anything."""
from __future__ import annotations

import typer

from pipemon.cli import app

config_app = typer.Typer(no_args_is_help=True, help="Configuration files.")
app.add_typer(config_app, name="config")


@config_app.command("check")
def check(path: str = typer.Argument(..., help="pipemon.yaml")) -> None:
    """Validate FILE; every problem is printed with its line and key. Exit 1 when invalid."""
    from pipemon import config
    from pipemon.cli.text import escaped
    from pipemon.errors import ConfigError

    try:
        settings = config.load(path)
    except ConfigError as e:
        for p in e.problems:
            typer.secho(escaped(str(p)), fg=typer.colors.RED, err=True)  # it may quote the file
        raise typer.Exit(1) from None
    typer.echo(f"{path}: OK ({len(settings.pipelines)} pipeline rules)")
