"""Several active workers, the pure parts: the partition balancer and the dispatch state cut per partition."""
from __future__ import annotations

import pytest

from pipemon.cluster.partitions import GRACE_S, ORPHAN_S, Balancer, _ranges, fair_share
from pipemon.engine.dispatch import merge_states, split_state

ALL = set(range(16))


@pytest.mark.parametrize("live, share", [(0, 16), (1, 16), (2, 8), (3, 6), (5, 4), (16, 1), (40, 1)])
def test_fair_share(live, share):
    assert fair_share(live) == share


def test_a_lone_worker_takes_every_free_partition():
    move = Balancer().decide(set(), set(), 1, 0.0)
    assert move.take == ALL and not move.give


def test_a_second_worker_takes_its_share_of_what_is_free_only():
    b = Balancer()
    # the first worker holds 0-7; the rest is free
    move = b.decide(set(), set(range(8)), 2, 0.0)
    assert move.take == set(range(8, 16))
    # everything is held by the other: nothing to take, nothing to give
    assert not Balancer().decide(set(), ALL, 2, 0.0)


def test_extras_go_back_only_after_the_grace_and_when_nothing_is_free():
    b = Balancer()
    assert not b.decide(ALL, ALL, 2, 0.0)                 # over the share: the grace starts
    assert not b.decide(ALL, ALL, 2, GRACE_S - 0.1)
    move = b.decide(ALL, ALL, 2, GRACE_S)
    assert move.give == set(range(8, 16)) and not move.take
    # the other worker left again before the grace ended: nothing is given
    b2 = Balancer()
    b2.decide(ALL, ALL, 2, 0.0)
    assert not b2.decide(ALL, ALL, 1, 1.0)
    assert not b2.decide(ALL, ALL, 2, GRACE_S)             # the grace restarted at 2 live
    # something free: someone under its share takes that first, nothing is given meanwhile
    b3 = Balancer()
    owned = set(range(12))
    b3.decide(owned, owned | {12, 13}, 2, 0.0)
    assert not b3.decide(owned, owned | {12, 13}, 2, GRACE_S + 1).give


def test_a_partition_nobody_takes_is_taken_over_the_share():
    b = Balancer()
    mine, theirs = set(range(8)), set(range(8, 14))     # 14 and 15 free: the other worker does not take them
    assert not b.decide(mine, mine | theirs, 2, 0.0)
    assert not b.decide(mine, mine | theirs, 2, ORPHAN_S - 1)
    assert b.decide(mine, mine | theirs, 2, ORPHAN_S).take == {14, 15}


def test_a_dead_workers_partitions_are_taken_once_it_is_gone():
    b = Balancer()
    mine = set(range(8))
    assert b.decide(mine, mine, 1, 0.0).take == set(range(8, 16))  # its locks vanished with its session


def test_ranges():
    assert _ranges({0, 1, 2, 3, 7, 9, 10}) == "0-3,7,9-10"
    assert _ranges(set()) == ""


def _group(key, fps, sent=(), next_flush=100.0, last_flush=None, last_sent=None):
    return {"key": key, "route_id": "r", "receiver": "hook", "labels": {"team": "t"}, "fps": sorted(fps),
            "next_flush": next_flush, "last_flush": last_flush, "last_sent": last_sent, "sent": sorted(sent)}


def test_dispatch_state_split_by_partition_and_merged_back():
    part = {"a": 1, "b": 1, "c": 2, "d": 3}
    state = {"groups": [_group("g1", {"a", "c"}, sent={"a"}, last_sent=50.0), _group("g2", {"b", "zz"})],
             "escalations": [{"fingerprint": "c", "policy": "p", "started": 1.0, "step": 0, "round": 0,
                              "next_at": 9.0}],
             "placed": {"a": ["g1"], "c": ["g1"], "b": ["g2"], "zz": ["g2"]}}
    pieces = split_state(state, part.get)
    assert set(pieces) == {1, 2}  # "zz" (an alert no longer known) is dropped
    assert {g["key"]: g["fps"] for g in pieces[1]["groups"]} == {"g1": ["a"], "g2": ["b"]}
    assert pieces[1]["groups"][0]["sent"] == ["a"] and pieces[2]["groups"][0]["sent"] == []
    assert [e["fingerprint"] for e in pieces[2]["escalations"]] == ["c"]
    merged = merge_states([pieces[1], pieces[2]])
    g1 = next(g for g in merged["groups"] if g["key"] == "g1")
    assert g1["fps"] == ["a", "c"] and g1["sent"] == ["a"] and g1["last_sent"] == 50.0
    assert merged["placed"] == {"a": ["g1"], "c": ["g1"], "b": ["g2"]}
    # one partition's owner gets only its own alerts
    assert [g["fps"] for g in merge_states([pieces[2]])["groups"]] == [["c"]]


def test_merged_group_flushes_at_the_earliest_and_remembers_the_latest_send():
    a = {"groups": [_group("g", {"x"}, next_flush=30.0, last_flush=5.0, last_sent=None)]}
    b = {"groups": [_group("g", {"y"}, next_flush=None, last_flush=7.0, last_sent=6.0)]}
    g = merge_states([a, b])["groups"][0]
    assert (g["next_flush"], g["last_flush"], g["last_sent"], g["fps"]) == (30.0, 7.0, 6.0, ["x", "y"])
