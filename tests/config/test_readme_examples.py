"""The configuration examples in the README are valid configuration (docs that users copy must load)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipemon.config import loads

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_configuration_examples():
    assert any("pipelines:" in b for b in BLOCKS) and any("receivers:" in b for b in BLOCKS)


@pytest.mark.parametrize("block", [b for b in BLOCKS if re.match(r"^(pipelines|receivers):", b)],
                         ids=lambda b: b.split(":", 1)[0])
def test_each_readme_configuration_example_loads(block):
    settings = loads(block, "README.md")
    assert settings.pipelines or settings.receivers
