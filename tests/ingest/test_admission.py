"""The writer's admission rules (pure, table-driven): who owns a pipeline after an event, and the per-token
new-pipeline quota."""
from __future__ import annotations

import json

import pytest

from pipemon.access import Caller, Role
from pipemon.admission import Owned, Quota, admit, owners
from pipemon.config import PipelineRule, Settings
from pipemon.errors import Forbidden, TooMany
from pipemon.ingest import native

A = Caller("a-ingest", Role.INGEST, "a", token_id=1)
B = Caller("b-ingest", Role.INGEST, "b", token_id=2)
ORG = Caller("root", Role.ORG_ADMIN, None, token_id=3)


@pytest.mark.parametrize("known, rule, said, token, expected", [
    (None, None, None, "a", (None, "a")),                 # new, nobody named: the token's team
    (None, None, "b", "a", (None, "b")),                  # new, the event names b
    (None, "c", "b", "a", (None, "c")),                   # new, the config wins
    (Owned("a", None), None, None, "a", ("a", "a")),
    (Owned("b", "b"), None, None, "a", ("b", "b")),       # another team's stays theirs
    (Owned("b", "b"), None, "a", "a", ("b", "a")),        # an event claiming it: a takeover (refused)
    (Owned(None, None), None, None, "a", (None, "a")),    # unowned: adopted
    (Owned("c", "b"), "c", "b", "a", ("c", "c")),
    (Owned("unowned", None), None, None, "a", (None, "a")),  # the stored UNOWNED marker: adopted too
])
def test_owners(known, rule, said, token, expected):
    assert owners(known, (rule, False), said, token) == expected


def test_a_team_file_does_not_take_a_pipeline_its_producer_names_for_another_team():
    # ownership.owner: a rule from payments' own file yields to the event's team; the main file does not
    assert owners(None, ("payments", True), "marketing", "payments") == (None, "marketing")
    assert owners(None, ("payments", False), "marketing", "payments") == (None, "payments")


def test_quota_refills_a_minutes_worth():
    q = Quota(per_minute=60)
    assert q.take(1, 60, now=0.0) == 0.0
    assert q.take(1, 1, now=0.0) == pytest.approx(1.0)   # one a second comes back
    assert q.take(2, 1, now=0.0) == 0.0                  # per token
    assert q.take(1, 30, now=30.0) == 0.0
    assert q.take(1, 61, now=1000.0) == 60.0  # more than a minute's worth never fits


def evs(*pipelines, team=None):
    extra = {"team": team} if team else {}
    return native.parse(json.dumps([{"pipeline": p, "type": "START", "run_id": "r", **extra}
                                    for p in pipelines]).encode(), 0.0)


def test_admit_decides_each_request_in_order():
    settings = Settings(pipelines=(PipelineRule(match="cfg/*", team="b"),))
    stored = {"x/a": Owned("a", None), "x/b": Owned("b", "b"), "x/none": Owned(None, None)}
    reqs = [evs("x/a", "x/new"), evs("x/b"), evs("cfg/p"), evs("x/new"), evs("x/none"), evs("x/none"),
            evs("y/mine", team="b"), evs("x/b", "z/q")]
    who = [A, A, A, B, A, B, A, ORG]
    out = admit(reqs, who, settings, stored.get, lambda _: None, Quota(600), 0.0)
    assert sorted(out.refused) == [1, 2, 3, 5, 6]
    assert all(isinstance(e, Forbidden) for e in out.refused.values())
    assert "'x/new'" in str(out.refused[3])  # made by an earlier request of the same group: a's now
    assert {k: c.name for k, c in out.claims.items()} == {"x/new": "a-ingest", "x/none": "a-ingest"}


def test_admit_limits_new_pipelines_per_token_and_refuses_whole_requests():
    q = Quota(per_minute=2)
    out = admit([evs("n/1", "n/2"), evs("n/3"), evs("n/1", "n/2")], [A, A, B], Settings(), {}.get,
                lambda _: None, q, 0.0)
    assert list(out.refused) == [1, 2]
    assert isinstance(out.refused[1], TooMany) and out.refused[1].retry_after == pytest.approx(30.0)
    assert isinstance(out.refused[2], Forbidden)  # b may not write what a's request just made


def test_a_rolled_back_request_gets_its_quota_back():
    q = Quota(per_minute=2)
    out = admit([evs("n/1", "n/2")], [A], Settings(), {}.get, lambda _: None, q, 0.0)
    assert out.taken == {1: 2} and q.take(1, 1, now=0.0) > 0
    q.refund(out.taken)
    assert q.take(1, 2, now=0.0) == 0.0
