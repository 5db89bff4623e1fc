import subprocess
import sys

import pytest

from pipemon import config
from pipemon.errors import ConfigError

EXAMPLE = """
pipelines:
  - match: "payments-airflow/*"     # glob on namespace/name; the first matching entry wins
    team: payments
    tier: 1                         # 1 = business-critical … 3 = best effort
    schedule: "0 2 * * *"           # cron; timezone: Europe/Berlin optional (default UTC)
    timezone: Europe/Berlin
    grace: 1h
    max_duration: 2h
    sla: "06:00"                    # must have succeeded by then on each scheduled day
    depends_on: ["raw/events_ingest"]
    tags: {domain: billing}
  - match: "*"
    team: data-platform
"""


def test_the_documented_example_loads():
    s = config.loads(EXAMPLE)
    rule = s.rule_for("payments-airflow/invoices")
    assert (rule.team, rule.tier, rule.schedule, rule.timezone, rule.grace, rule.max_duration, rule.sla) == \
        ("payments", 1, "0 2 * * *", "Europe/Berlin", 3600, 7200, "06:00")
    assert rule.depends_on == ("raw/events_ingest",) and rule.tags == {"domain": "billing"}
    assert s.rule_for("other/x").team == "data-platform"  # the first match wins, then the catch-all


@pytest.mark.parametrize("text,expected", [
    ("pipelines:\n  - match: a/*\n    scheduel: '0 2 * * *'\n", "<c>:3: pipelines[0].scheduel: unknown key"),
    ("pipelines:\n  - match: a/*\n    tier: 7\n", "<c>:3: pipelines[0].tier: Input should be less than or equal to 3"),
    ("pipelines:\n  - match: a/*\n    schedule: 'every day'\n", "<c>:3: pipelines[0].schedule: not a valid cron"),
    ("pipelines:\n  - match: a/*\n    grace: soon\n", "<c>:3: pipelines[0].grace: expected a duration"),
    ("pipelines:\n  - match: a/*\n    timezone: Mars/Base\n", "<c>:3: pipelines[0].timezone: unknown timezone"),
    ("pipelines:\n  - match: a/*\n    sla: '25:99'\n", "<c>:3: pipelines[0].sla: expected a time of day"),
    ("pipelines:\n  - match: a/*\n    depends_on: [justaname]\n", "<c>:3: pipelines[0].depends_on"),
    ("pipelines:\n  - team: x\n", "<c>:2: pipelines[0].match: Field required"),
    ("colour: red\n", "<c>:1: colour: unknown key"),
    ("pipelines: [\n", "<c>:2: not valid YAML"),
    ("a: 1\na: 2\n", "<c>:2: duplicate key 'a'"),
    ("- just\n- a list\n", "<c>:1: the configuration must be a mapping"),
])
def test_problems_name_line_and_key(text, expected):
    with pytest.raises(ConfigError) as e:
        config.loads(text, "<c>")
    assert any(str(p).startswith(expected) for p in e.value.problems), [str(p) for p in e.value.problems]


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        config.loads("pipelines:\n  - match: a\n    tier: 9\n    grace: x\nfoo: 1\n", "f.yaml")
    assert [p.loc for p in e.value.problems] == ["f.yaml:3", "f.yaml:4", "f.yaml:5"]


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("1w", 604800),
                                          ("500ms", 0.5), (45, 45)])
def test_durations(text, seconds):
    assert config.parse_duration(text) == seconds


def test_empty_file_is_the_defaults():
    assert config.loads("") == config.Settings()


def test_config_check_command(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(EXAMPLE)
    bad.write_text("pipelines:\n  - match: a/*\n    scheduel: x\n")
    out = subprocess.run([sys.executable, "-m", "pipemon", "config", "check", str(good)], capture_output=True, text=True)
    assert out.returncode == 0 and "OK (2 pipeline rules)" in out.stdout
    out = subprocess.run([sys.executable, "-m", "pipemon", "config", "check", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and f"{bad}:3: pipelines[0].scheduel: unknown key" in out.stderr
