"""The deliverer's pure rules, table-driven: which queued notification may go (order per alert), what an
attempt's result means, the retry schedule, the failing streak (skipped is not delivered) and the rate
limit of a receiver test."""
from __future__ import annotations

import pytest

from pipemon.notify.delivery import _Bucket
from pipemon.notify.rules import (
    Outcome,
    Queued,
    ReceiverChange,
    backoff,
    outcome,
    pick,
    retry_at,
    streak_after,
)

NOW = 1000.0


def q(id: int, fps: str, group: str = "", next_at: float = NOW) -> Queued:
    return Queued(id, frozenset(fps.split()), group or f"g-{fps}", next_at)


# each case: the queue (ids in creation order), and which id may go now (None: none) and when to look again
@pytest.mark.parametrize("queue, expect, wake", [
    ([], None, None),
    ([q(1, "A")], 1, None),
    # the trigger of A waits for its retry: A's resolve waits behind it, B goes
    ([q(1, "A", next_at=NOW + 30), q(2, "A"), q(3, "B")], 3, None),
    # only A's: nothing may go until the trigger's retry is due
    ([q(1, "A", next_at=NOW + 30), q(2, "A")], None, NOW + 30),
    # a crash left both pending, the resolve's retry time earlier than the trigger's: still the trigger first
    ([q(1, "A", next_at=NOW + 10), q(2, "A", next_at=NOW - 5)], None, NOW + 10),
    ([q(1, "A", next_at=NOW - 1), q(2, "A", next_at=NOW - 5)], 1, None),
    # a group notification carrying A and B holds back a later one for B alone
    ([q(1, "A B", group="g1", next_at=NOW + 7), q(2, "B", group="g2")], None, NOW + 7),
    # the same group with other alerts (a later flush of the group) keeps its order too
    ([q(1, "A", group="g1", next_at=NOW + 7), q(2, "C", group="g1"), q(3, "D", group="g3")], 3, None),
    # a blocked notification's own time does not decide when to look again: its blocker's does
    ([q(1, "A", next_at=NOW + 50), q(2, "A", next_at=NOW + 5), q(3, "B", next_at=NOW + 20)], None, NOW + 20),
])
def test_pick_keeps_each_alert_in_creation_order(queue, expect, wake):
    got, when = pick(queue, NOW)
    assert (got.id if got else None, when) == (expect, wake)


@pytest.mark.parametrize("targets, permanent, age, expect", [
    (2, None, 5.0, Outcome.SENT),
    (0, None, 5.0, Outcome.SKIPPED),      # every channel filters it out: not a delivery
    (0, False, 5.0, Outcome.SKIPPED),
    (1, True, 5.0, Outcome.FAILED),
    (1, False, 5.0, Outcome.RETRY),
    (1, False, 100.0, Outcome.DEAD),      # transient, but for longer than max_age
])
def test_outcome_of_an_attempt(targets, permanent, age, expect):
    assert outcome(targets=targets, permanent=permanent, age=age, max_age=100.0) is expect
    assert expect.final is (expect is not Outcome.RETRY)


@pytest.mark.parametrize("attempts, retry_after, jitter, expect", [
    (1, None, 1.0, NOW + 2),
    (3, None, 1.0, NOW + 8),
    (3, None, 0.5, NOW + 4),
    (10, None, 1.0, NOW + 60),     # capped
    (1, 45.0, 1.0, NOW + 45),      # the far end's Retry-After wins when longer
    (10, 5.0, 1.0, NOW + 60),
])
def test_retry_at_is_capped_exponential_with_jitter_and_honours_retry_after(attempts, retry_after, jitter,
                                                                              expect):
    assert retry_at(attempts, NOW, retry_after, base=2.0, cap=60.0, jitter=jitter) == expect


def test_store_backoff_grows_to_its_cap():
    got = [backoff(f, base=0.5, cap=30.0, jitter=1.0) for f in (1, 2, 3, 7, 8, 20)]
    assert got == [0.5, 1, 2, 30, 30, 30]


S, K, R, F, D = Outcome.SENT, Outcome.SKIPPED, Outcome.RETRY, Outcome.FAILED, Outcome.DEAD


# results in order -> streak after each, and the receiver_failing changes they cause (threshold 3)
@pytest.mark.parametrize("results, streaks, changes", [
    ([R, R, R], [1, 2, 3], [None, None, ReceiverChange.FAILING]),
    ([R, R, R, R, S], [1, 2, 3, 4, 0], [None, None, ReceiverChange.FAILING, None, ReceiverChange.RECOVERED]),
    # a filtered resolve between failures neither resets the streak nor resolves receiver_failing
    ([R, R, R, K, R, K, S], [1, 2, 3, 3, 4, 4, 0],
     [None, None, ReceiverChange.FAILING, None, None, None, ReceiverChange.RECOVERED]),
    ([R, K, R, K, R], [1, 1, 2, 2, 3], [None, None, None, None, ReceiverChange.FAILING]),
    # nor does it count as a failure
    ([K, K, K, K], [0, 0, 0, 0], [None] * 4),
    # permanent failures and give-ups count as failures; a success below the threshold changes nothing
    ([F, D, S, F], [1, 2, 0, 1], [None, None, None, None]),
])
def test_the_failing_streak_and_skipped_is_not_delivered(results, streaks, changes):
    streak, got_streaks, got_changes = 0, [], []
    for r in results:
        streak, change = streak_after(streak, r, 3)
        got_streaks.append(streak)
        got_changes.append(change)
    assert (got_streaks, got_changes) == (streaks, changes)


@pytest.mark.parametrize("tokens, k, expect", [
    (3.0, 2, [0.0, 0.0]),
    (1.0, 2, [0.0, 0.5]),            # the resolve waits for its token (rate 2/s)
    (0.5, 2, 0.25),                  # no token now: refused, retry when the first one is there
    (1.0, 30, 14.5 - 10.0),          # the last would wait 14.5 s > 10 s: refused for the difference
])
def test_a_receiver_test_reserves_its_tokens_or_is_refused(tokens, k, expect):
    b = _Bucket(rate=2.0, burst=3, tokens=tokens, at=100.0)
    if isinstance(expect, list):
        assert b.reserve(k, 10.0, now=100.0) == pytest.approx(expect)
        assert b.tokens == pytest.approx(tokens - k)
    else:
        with pytest.raises(ValueError) as e:
            b.reserve(k, 10.0, now=100.0)
        assert e.value.args[0] == pytest.approx(expect)
        assert b.tokens == pytest.approx(tokens)  # refused: nothing taken
