"""Command line: `pipemon …`. Each module of this package adds its commands to `app`."""
from __future__ import annotations

import logging
import os

import typer
import typer.core

from pipemon import __version__

_value_type = typer.core.TyperOption.display_type_rich


def _flag_has_no_value(self: typer.core.TyperOption, ctx):  # type: ignore[no-untyped-def]
    """typer's rich help gives every option a value type, `<bool>` to flags that take none: not to flags."""
    return None if self.is_flag else _value_type(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_has_no_value  # type: ignore[method-assign]

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="pipemon: monitoring and alerting for data pipelines.")

DEFAULT_URL = os.environ.get("PIPEMON_URL", "http://127.0.0.1:8787")
UrlOption = typer.Option(DEFAULT_URL, "--url", envvar="PIPEMON_URL", help="pipemon service URL")
TokenOption = typer.Option(None, "--token", envvar="PIPEMON_TOKEN", help="API token (Bearer)")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pipemon {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    app()


# Register the commands (modules import `app` from here).
from pipemon.cli import serve as _serve  # noqa: E402,F401
from pipemon.cli import report as _report  # noqa: E402,F401
from pipemon.cli import status as _status  # noqa: E402,F401
from pipemon.cli import configcmd as _configcmd  # noqa: E402,F401
from pipemon.cli import demo as _demo  # noqa: E402,F401
from pipemon.cli import alerts as _alerts  # noqa: E402,F401
from pipemon.cli import detect as _detect  # noqa: E402,F401
from pipemon.cli import token as _token  # noqa: E402,F401
from pipemon.cli import export as _export  # noqa: E402,F401
from pipemon.cli import backup as _backup  # noqa: E402,F401
