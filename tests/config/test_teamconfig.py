"""Configuration per team (issue 11, item 6): team files beside the main file, each confined to its team,
judged alone; a bad one keeps its team's last good part while the others apply."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipemon import config
from pipemon.engine.route import compile_routes, routes_for
from pipemon.errors import ConfigError
from pipemon.teamconfig import ConfigSource, combine, parse_team

MAIN = """
teams:
  - {name: payments, display_name: Payments, contact: "#payments"}
  - {name: marketing}
pipelines:
  - match: "shared/owned_by_main"
    team: marketing
receivers:
  - name: org-default
    webhook: {url: "http://127.0.0.1:9/default"}
  - name: org-pager
    webhook: {url: "http://127.0.0.1:9/pager"}
route:
  receiver: org-default
  routes:
    - matchers: ['severity="critical"']
      receiver: org-pager
"""

PAYMENTS = """
team: payments
pipelines:
  - match: "pay/*"
    tier: 1
  - match: "shared/*"
receivers:
  - name: pay-hook
    webhook: {url: "http://127.0.0.1:9/pay"}
route:
  receiver: pay-hook
  routes:
    - matchers: ['team="marketing"']
      receiver: org-pager
maintenance_windows:
  - {name: pay-freeze, matchers: ['kind="late"'], schedule: "0 0 * * 6", duration: 2h}
inhibit_rules:
  - {source_matchers: ['kind="failure"'], target_matchers: ['kind="late"'], equal: [pipeline]}
escalation_policies:
  - name: pay-esc
    steps: [{after: 15m, receiver: org-pager}]
"""


def main_settings() -> config.Settings:
    return config.loads(MAIN, "pipemon.yaml")


def test_teams_are_declared_in_the_main_file():
    s = main_settings()
    assert [(t.name, t.display_name, t.contact) for t in s.teams] == [
        ("payments", "Payments", "#payments"), ("marketing", None, None)]
    with pytest.raises(ConfigError) as e:
        config.loads("teams:\n  - name: unowned\n  - name: 'no spaces'\n", "m.yaml")
    assert [str(p) for p in e.value.problems] == [
        "m.yaml:2: teams[0].name: 'unowned' is reserved for pipelines nobody owns",
        "m.yaml:3: teams[1].name: 'no spaces' is not a team name "
        "(letters, digits, '_', '.', '-'; at most 64)"]


def test_a_team_file_is_confined_to_its_team():
    res = parse_team(PAYMENTS, "config.d/payments.yaml", main_settings())
    assert res.problems == () and res.part is not None
    s = combine(main_settings(), [res], {}).settings
    # its pipeline rules belong to payments; the main file's rule wins a pipeline both match
    assert s.rule_for("pay/ledger").team == "payments" and s.rule_for("pay/ledger").tier == 1
    assert s.rule_for("shared/owned_by_main").team == "marketing"
    assert s.rule_for("shared/other").team == "payments"
    root = compile_routes(s.route, s.team_routes())

    def receivers(**labels: str) -> list[str]:
        return [n.receiver for n in routes_for(root, labels) if n.receiver]
    # payments' alerts go to its hook, and the main file's routes still see them (org-wide pager)
    assert receivers(team="payments", severity="error") == ["pay-hook"]
    assert receivers(team="payments", severity="critical") == ["pay-hook", "org-pager"]
    # its child route naming marketing can never match: the file reaches payments' alerts only
    assert receivers(team="marketing", severity="error") == ["org-default"]
    # windows and inhibit rules: only payments' alerts
    [w] = s.maintenance_windows
    assert [str(m) for m in w.matchers] == ['team="payments"', 'kind="late"']
    [r] = s.inhibit_rules
    assert str(r.target_matchers[0]) == str(r.source_matchers[0]) == 'team="payments"'
    assert [n.id for n in root.children] == ["root.team[payments]", "root.0"]


def test_team_problems_are_all_reported_with_file_line_and_key():
    text = """team: payments
pipelines:
  - match: "pay/*"
    team: marketing
  - match: "pay/x"
    scheduel: "0 * * * *"
receivers:
  - name: org-default
    webhook: {url: "http://x/y"}
route:
  receiver: nobody
  escalation: no-policy
escalation_policies:
  - name: p
    steps: [{after: 1m, receiver: ghost}]
"""
    res = parse_team(text, "payments.yaml", main_settings())
    assert res.part is None
    assert [str(p) for p in res.problems] == [
        "payments.yaml:4: pipelines[0].team: a pipeline of team payments's file must belong to payments, "
        "not 'marketing'",
        "payments.yaml:6: pipelines[1].scheduel: unknown key",
        "payments.yaml:8: receivers[0].name: 'org-default' is already defined in the main file",
        "payments.yaml:11: route.receiver: no receiver named 'nobody'",
        "payments.yaml:12: route.escalation: no escalation policy named 'no-policy'",
        "payments.yaml:15: escalation_policies[0].steps[0].receiver: no receiver named 'ghost'"]


def test_the_team_is_the_file_name_unless_the_file_says_and_must_be_declared():
    res = parse_team("pipelines: [{match: 'mkt/*'}]\n", "/x/config.d/marketing.yaml", main_settings())
    assert res.team == "marketing" and res.part is not None and res.part.pipelines[0].team == "marketing"
    res = parse_team("pipelines: []\n", "/x/config.d/growth.yml", main_settings())
    assert [str(p) for p in res.problems] == [
        "/x/config.d/growth.yml:1: team: team 'growth' is not declared under teams: in the main file "
        "(declared: marketing, payments)"]


def test_the_main_file_reports_every_reference_problem_at_once():
    with pytest.raises(ConfigError) as e:
        config.loads("""receivers:
  - name: a
    webhook: {url: "http://x/a"}
  - name: a
    webhook: {url: "http://x/b"}
route:
  receiver: b
  routes:
    - receiver: c
      escalation: nope
    - receiver: a
      group_wait: soon
escalation_policies:
  - name: e
    steps: [{after: 1m, receiver: d}]
""", "m.yaml")
    assert [str(p) for p in e.value.problems] == [
        "m.yaml:4: receivers[1].name: duplicate name 'a'",
        "m.yaml:7: route.receiver: no receiver named 'b'",
        "m.yaml:9: route.routes[0].receiver: no receiver named 'c'",
        "m.yaml:10: route.routes[0].escalation: no escalation policy named 'nope'",
        "m.yaml:12: route.routes[1].group_wait: expected a duration such as 30s, 15m, 1h30m or 2d, "
        "got 'soon'",
        "m.yaml:15: escalation_policies[0].steps[0].receiver: no receiver named 'd'"]


def test_unused_receivers_are_found_across_main_and_team_files():
    s = combine(main_settings(), [parse_team(PAYMENTS, "payments.yaml", main_settings()),
                                  parse_team("receivers:\n  - name: mkt-idle\n    webhook: {url: 'http://x/m'}\n",
                                             "marketing.yaml", main_settings())], {}).settings
    assert config.unused_receivers(s) == ["mkt-idle"]


def test_a_bad_file_keeps_its_teams_last_good_part_and_the_others_apply():
    main = main_settings()
    good_pay = parse_team(PAYMENTS, "payments.yaml", main)
    mkt_v1 = parse_team("pipelines: [{match: 'mkt/*', tier: 3}]\n", "marketing.yaml", main)
    first = combine(main, [good_pay, mkt_v1], {})
    assert all(s.ok for s in first.statuses.values())
    bad_pay = parse_team(PAYMENTS.replace("tier: 1", "tier: 9"), "payments.yaml", main)
    mkt_v2 = parse_team("pipelines: [{match: 'mkt/*', tier: 1}]\n", "marketing.yaml", main)
    second = combine(main, [bad_pay, mkt_v2], first.good)
    pay, mkt = second.statuses["payments"], second.statuses["marketing"]
    assert (pay.ok, pay.kept) == (False, "last good") and "pipelines[0].tier" in pay.problems[0]
    assert (mkt.ok, mkt.kept) == (True, None)
    assert second.settings.rule_for("pay/x").tier == 1       # payments: its last good file
    assert second.settings.rule_for("mkt/x").tier == 1       # marketing: its change applied
    # a team with no last good part (invalid from the start) has nothing in effect
    third = combine(main, [bad_pay, mkt_v2], {})
    assert third.statuses["payments"].kept is None and third.settings.rule_for("pay/x") is None


def test_a_name_two_team_files_define_goes_to_the_first_team():
    main = main_settings()
    a = parse_team("receivers:\n  - name: shared\n    webhook: {url: 'http://x/a'}\n", "marketing.yaml", main)
    b = parse_team("receivers:\n  - name: shared\n    webhook: {url: 'http://x/b'}\n", "payments.yaml", main)
    c = combine(main, [b, a], {})
    assert c.statuses["marketing"].ok and not c.statuses["payments"].ok
    why = c.statuses["payments"].problems[0]
    assert "receiver 'shared' is already defined by team marketing's file" in why
    assert [r.name for r in c.settings.receivers] == ["org-default", "org-pager", "shared"]


def write(tmp: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)


def test_config_dir_and_include_are_both_read(tmp_path):
    write(tmp_path, {"pipemon.yaml": MAIN + "include: ['teams/*.yaml']\n", "teams/payments.yaml": PAYMENTS,
                     "config.d/marketing.yaml": "pipelines: [{match: 'mkt/*'}]\n"})
    loaded = ConfigSource(tmp_path / "pipemon.yaml", tmp_path / "config.d").read()
    assert loaded.ok and sorted(loaded.statuses) == ["marketing", "payments"]
    assert loaded.settings is not None and loaded.settings.rule_for("mkt/a").team == "marketing"
    missing = ConfigSource(tmp_path / "pipemon.yaml", tmp_path / "nope").read()
    assert missing.settings is None and "not a directory" in missing.main_problems[0]


def test_config_check_reports_every_file_and_warns_about_unused_receivers(tmp_path):
    write(tmp_path, {"pipemon.yaml": MAIN, "config.d/payments.yaml": PAYMENTS,
                     "config.d/marketing.yaml": "receivers:\n  - name: mkt-idle\n    webhook: {url: 'http://x/m'}\n"})
    cmd = [sys.executable, "-m", "pipemon", "config", "check", str(tmp_path / "pipemon.yaml"),
           "--config-dir", str(tmp_path / "config.d")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "OK (3 pipeline rules, 2 team files)" in out.stdout
    assert "warning: receiver 'mkt-idle' is not used by any route or escalation policy" in out.stderr
    write(tmp_path, {"config.d/payments.yaml": PAYMENTS.replace("receiver: pay-hook", "receiver: gone"),
                     "config.d/marketing.yaml": "pipelines: [{match: 'mkt/*', tier: 0}]\n"})
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    pay, mkt = tmp_path / "config.d/payments.yaml", tmp_path / "config.d/marketing.yaml"
    assert f"{mkt}:1: pipelines[0].tier: Input should be greater than or equal to 1" in out.stderr
    assert f"{pay}:11: route.receiver: no receiver named 'gone'" in out.stderr


def test_the_readme_team_example_loads():
    import re
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    main = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "# pipemon.yaml (the main" in b)
    team = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "# config.d/payments.yaml" in b)
    res = parse_team(team, "config.d/payments.yaml", config.loads(main, "pipemon.yaml"))
    assert res.problems == () and res.part is not None
    assert res.part.pipelines[0].team == "payments"
    assert res.part.maintenance_windows[0].name == "payments-freeze"


@pytest.mark.parametrize("name", ["my team.yaml", "unowned.yaml"])
def test_a_file_name_that_is_no_team_name_needs_a_team_key(name):
    res = parse_team("pipelines: []\n", name, config.Settings())
    assert res.part is None
    assert "is not a team name: rename the file or put `team: NAME`" in str(res.problems[0])
    assert parse_team("team: growth\n", name, config.Settings()).part is not None
