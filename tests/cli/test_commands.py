"""Every command: flags read as flags in --help, and every command that talks to a server takes a token."""
from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pipemon.cli import app


def commands() -> list[tuple[list[str], Any]]:
    """(path, command) of every command and group; typer carries its own click, hence duck typing."""
    out: list[tuple[list[str], Any]] = []

    def walk(path: list[str], cmd: Any) -> None:
        out.append((path, cmd))
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk([*path, name], sub)
    walk([], typer.main.get_command(app))
    return out


ALL = commands()


def test_the_tree_is_walked():
    names = {" ".join(p) for p, _ in ALL}
    assert {"status", "show", "alerts", "silence list", "export runs", "detect", "replay", "send"} <= names


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "pipemon")
def test_help_shows_flags_as_flags(path):
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.output
    flags = [o for p, cmd in ALL if p == path for prm in cmd.params if getattr(prm, "is_flag", False)
             for o in prm.opts]
    assert all(f in res.output for f in flags), flags


@pytest.mark.parametrize("path", [p for p, c in ALL if any("--url" in prm.opts for prm in c.params)],
                         ids=lambda p: " ".join(p))
def test_commands_that_talk_to_a_server_take_a_token(path):
    cmd = dict((tuple(p), c) for p, c in ALL)[tuple(path)]
    [token] = [prm for prm in cmd.params if "--token" in prm.opts]
    assert token.param_type_name == "option" and token.envvar == "PIPEMON_TOKEN"
