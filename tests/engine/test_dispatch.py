"""Aggregation groups and their timers, without I/O: what would be sent, and when."""
from pipemon.config import loads
from pipemon.engine.alerts import Alert
from pipemon.engine.dispatch import Dispatch
from pipemon.engine.mute import Muter, Silence
from pipemon.engine.matchers import parse_all
from pipemon.model import AlertState, NotifyAction, Severity

CFG = """
receivers: [{name: team}]
route:
  receiver: team
  group_by: [team]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
"""


def alert(fp, team="payments", severity=Severity.ERROR, kind="failure"):
    return Alert(fp, f"ns/{fp}", team, kind, {"team": team, "pipeline": f"ns/{fp}", "kind": kind,
                                              "severity": severity.value}, severity, "s", "d", 0.0, 0.0)


class World:
    def __init__(self, cfg=CFG):
        self.muter = Muter()
        self.d = Dispatch(loads(cfg), self.muter)
        self.alerts: dict[str, Alert] = {}

    def open(self, a, now):
        self.alerts[a.fingerprint] = a
        self.d.place(a, now)

    def flush(self, now):
        return [(o.action, o.fingerprints) for o in self.d.flush(now, self.alerts.get, lambda: [
            a for a in self.alerts.values() if a.open])]


def test_group_wait_then_interval_then_repeat_then_resolve():
    w = World()
    w.open(alert("a"), 0)
    assert w.flush(29) == []
    assert w.flush(30) == [(NotifyAction.TRIGGER, ("a",))]
    w.open(alert("b"), 60)                       # joins the group: sent at the next interval, with a
    assert w.flush(300) == []
    assert w.flush(330) == [(NotifyAction.TRIGGER, ("a", "b"))]
    assert w.flush(330 + 300) == []               # nothing new
    assert w.flush(330 + 4 * 3600) == [(NotifyAction.REPEAT, ("a", "b"))]
    w.alerts["a"].state = AlertState.RESOLVED
    assert w.flush(330 + 4 * 3600 + 300) == [(NotifyAction.RESOLVE, ("a",))]


def test_resolved_before_the_first_flush_is_never_sent():
    w = World()
    w.open(alert("a"), 0)
    w.alerts["a"].state = AlertState.RESOLVED
    assert w.flush(30) == [] and w.d.groups == {}


def test_a_silenced_alert_that_was_sent_still_gets_its_resolve():
    w = World()
    w.open(alert("a"), 0)
    assert w.flush(30) == [(NotifyAction.TRIGGER, ("a",))]
    w.muter.silences[1] = Silence(1, parse_all(['team="payments"']), 40, 10_000, "me", "")
    w.open(alert("b"), 50)
    assert w.flush(330) == []                    # b is silenced: not sent; a was sent already
    w.alerts["a"].state = AlertState.RESOLVED
    assert w.flush(630) == [(NotifyAction.RESOLVE, ("a",))]


def test_info_notices_are_said_once():
    w = World()
    w.open(alert("n", severity=Severity.INFO, kind="upstream_failure"), 0)
    assert w.flush(30) == [(NotifyAction.TRIGGER, ("n",))]
    assert w.flush(30 + 8 * 3600) == []


def test_state_round_trips_through_json():
    w = World()
    w.open(alert("a"), 0)
    w.flush(30)
    w2 = World()
    w2.alerts = w.alerts
    w2.d.load_json(w.d.to_json())
    w2.open(alert("b"), 40)
    assert w2.flush(330) == [(NotifyAction.TRIGGER, ("a", "b"))]


ESCALATING = """
receivers: [{name: team}, {name: boss}]
escalation_policies:
  - name: up
    steps: [{after: 10m, receiver: boss}, {after: 20m, receiver: boss}]
route:
  receiver: team
  group_by: [team]
  group_wait: 30s
  group_interval: 7m
  repeat_interval: 4h
  escalation: up
"""


def test_pieces_are_the_split_state_and_touched_names_every_piece_that_moved():
    """The writer stores only the pieces of the partitions whose alerts `touched` names: any other piece
    must be as it was stored; and a stored piece must not move with the live state (it is compared later)."""
    import copy

    from pipemon.engine.dispatch import split_state
    w = World(ESCALATING)
    part = {"a": 0, "b": 1, "c": 1, "d": 2, "e": 0}.get     # three partitions; teams span them
    teams = {"a": "payments", "b": "payments", "c": "search", "d": "search", "e": "ads"}
    stored: dict[int, dict] = {}
    kept: dict[int, dict] = {}  # deep copies of what was stored, to catch a stored piece moving

    def step():
        pieces = w.d.pieces(part)
        assert pieces == split_state(w.d.to_json(), part)
        touched = w.d.take_touched()
        moved = set(pieces) | set(stored) if touched is None else {part(fp) for fp in touched}
        for n in set(pieces) | set(stored):
            if n not in moved:
                assert pieces.get(n) == stored.get(n), f"partition {n} moved but was not touched"
        wanted = w.d.pieces(part, moved)
        assert wanted == {n: p for n, p in pieces.items() if n in moved}
        for n in moved:
            stored[n] = wanted.get(n)
            kept[n] = copy.deepcopy(wanted.get(n))

    def check_kept():
        assert stored == kept

    step()
    for i, fp in enumerate("abcde"):
        w.open(alert(fp, team=teams[fp]), i)
        step()
    for now in (30, 450, 630, 870, 1230, 1290, 2000, 3000):  # 630, 1230: escalation steps alone
        w.flush(now)
        check_kept()
        step()
    w.alerts["b"].state = AlertState.RESOLVED
    for now in (3300, 3600, 4000):
        w.flush(now)
        check_kept()
        step()
    w.d.on_acknowledged(w.alerts["a"], 4100)
    check_kept()
    step()
    w.d.load_json(w.d.to_json())
    assert w.d.take_touched() is None  # after a load every piece is stored anew
