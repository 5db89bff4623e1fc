"""Matchers, the routing tree and severity: pure, table-driven."""
import pytest

from pipemon.config import loads
from pipemon.engine.matchers import Matcher
from pipemon.engine.route import compile_routes, routes_for
from pipemon.engine.severity import Impact, severity
from pipemon.model import Severity


@pytest.mark.parametrize("text,labels,hit", [
    ('team="payments"', {"team": "payments"}, True),
    ('team="payments"', {"team": "pay"}, False),
    ('team!="payments"', {"team": "pay"}, True),
    ('severity=~"critical|error"', {"severity": "error"}, True),
    ('severity=~"critical|error"', {"severity": "errors"}, False),   # anchored, as in Alertmanager
    ('pipeline!~"legacy/.*"', {"pipeline": "legacy/x"}, False),
    ('pipeline!~"legacy/.*"', {"pipeline": "new/x"}, True),
    ('tier=""', {}, True),                                              # a missing label is the empty string
    ("team=payments", {"team": "payments"}, True),                      # unquoted values are fine
    ('note="a \\"quoted\\" word"', {"note": 'a "quoted" word'}, True),
])
def test_matchers(text, labels, hit):
    assert Matcher.parse(text).matches(labels) is hit


@pytest.mark.parametrize("bad", ["team", "=x", 'team=~"("', "team==x", '1team="x"'])
def test_bad_matchers(bad):
    with pytest.raises(ValueError):
        Matcher.parse(bad)


TREE = """
receivers: [{name: default}, {name: pay-pager}, {name: pay-slack}, {name: audit}, {name: ml}]
route:
  receiver: default
  group_by: [team]
  group_wait: 10s
  routes:
    - matchers: ['team="payments"', 'severity=~"critical|error"']
      receiver: pay-pager
      group_wait: 0s
      continue: true
    - matchers: ['team="payments"']
      receiver: pay-slack
      routes:
        - matchers: ['kind="schema_change"']
          receiver: audit
    - matchers: ['team="ml"']
      receiver: ml
      group_by: [pipeline]
"""


@pytest.mark.parametrize("labels,receivers", [
    ({"team": "payments", "severity": "critical", "kind": "failure"}, ["pay-pager", "pay-slack"]),  # continue
    ({"team": "payments", "severity": "warning", "kind": "late"}, ["pay-slack"]),
    ({"team": "payments", "severity": "info", "kind": "schema_change"}, ["audit"]),               # deepest match
    ({"team": "payments", "severity": "error", "kind": "schema_change"}, ["pay-pager", "audit"]),
    ({"team": "ml", "severity": "error"}, ["ml"]),
    ({"team": "finance", "severity": "critical"}, ["default"]),                                    # no child: root
])
def test_routing_tree(labels, receivers):
    root = compile_routes(loads(TREE).route)
    assert [n.receiver for n in routes_for(root, labels)] == receivers


def test_children_inherit_unset_settings():
    root = compile_routes(loads(TREE).route)
    pager, slack, ml = root.children
    assert (pager.group_wait, pager.group_by) == (0, ("team",))
    assert (slack.group_wait, slack.children[0].group_wait) == (10, 10)
    assert ml.group_by == ("pipeline",) and ml.repeat_interval == root.repeat_interval == 4 * 3600


@pytest.mark.parametrize("kind,impact,expected", [
    ("failure", Impact(), Severity.ERROR),
    ("failure", Impact(tier=1), Severity.CRITICAL),
    ("failure", Impact(tier=3), Severity.WARNING),
    ("failure", Impact(tier=1, downstream_pipelines=20), Severity.CRITICAL),           # clamped
    ("late", Impact(), Severity.WARNING),
    ("late", Impact(downstream_teams=3), Severity.ERROR),                              # blast radius
    ("late", Impact(age_s=5 * 3600), Severity.ERROR),                                  # a warning that lasts
    ("late", Impact(tier=3), Severity.INFO),
    ("sla_miss", Impact(tier=1), Severity.CRITICAL),
    ("volume_anomaly", Impact(score=5.0), Severity.WARNING),
    ("volume_anomaly", Impact(score=9.0), Severity.ERROR),                             # far outside normal
    ("duration_anomaly", Impact(tier=3, score=4.5), Severity.INFO),
    ("upstream_failure", Impact(tier=1, downstream_pipelines=50), Severity.INFO),      # a notice stays a notice
    ("schema_change", Impact(tier=1), Severity.INFO),
])
def test_severity_table(kind, impact, expected):
    sev, why = severity(kind, impact, warning_escalates_after=4 * 3600)
    assert sev is expected, why
    assert why
