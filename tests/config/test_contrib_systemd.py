"""The systemd units in contrib/systemd/ call pipemon commands and options that exist (a renamed option
would otherwise only show when a service fails to start)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def pipemon_commands() -> list[tuple[str, list[str]]]:
    out = []
    for unit in sorted(UNITS.glob("*.service")):
        for line in unit.read_text().splitlines():
            m = re.match(r"Exec\w+=[-+@!]*(.*)", line)
            if not m:
                continue
            words = shlex.split(m.group(1).replace("%%", "%"))
            if words[:2] == ["/bin/sh", "-c"]:
                words = shlex.split(words[2])
            words = [w for w in words if w != "exec"]
            if words and words[0].endswith("/pipemon"):
                out.append((unit.name, words[1:]))
    return out


def test_the_units_run_pipemon():
    assert {u for u, _ in pipemon_commands()} == {"pipemon.service", "pipemon-backup.service"}


@pytest.mark.parametrize("unit,args", pipemon_commands(),
                         ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_every_command_and_option_exists(unit, args):
    sub = [a for a in args if not a.startswith("-")][:2]
    sub = sub[:2] if sub[:1] in (["db"], ["config"]) else sub[:1]
    helped = subprocess.run([sys.executable, "-m", "pipemon", *sub, "--help"], capture_output=True, text=True,
                            timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert helped.returncode == 0, helped.stderr
    for opt in (a for a in args if a.startswith("--")):
        assert opt in helped.stdout, f"{unit}: pipemon {' '.join(sub)} has no option {opt}"
