"""The deliverer's decisions, pure (no I/O, no clock: `now` is passed in), so each is a table-driven test.

    pick(queue, now)                which of a receiver's queued notifications may go now (order per alert)
    outcome(error, targets, …)      what one attempt's result means: sent, skipped, retry, failed, dead
    retry_at(attempts, now, …)      when a transient failure is tried again (capped exponential, jittered)
    streak_after(streak, outcome)   the receiver's failing streak, and whether receiver_failing changes
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pipemon.model import DeliveryStatus


class Outcome(enum.StrEnum):
    """An attempt's result; its value is the row's status after it (model.DeliveryStatus)."""

    SENT = DeliveryStatus.SENT        # at least one channel took it (or every channel had before)
    SKIPPED = DeliveryStatus.SKIPPED  # no channel wants it (e.g. a resolve without send_resolved)
    RETRY = DeliveryStatus.PENDING    # a transient failure: tried again later (the row stays pending)
    FAILED = DeliveryStatus.FAILED    # a permanent failure: retrying cannot help
    DEAD = DeliveryStatus.DEAD        # given up: failing for longer than max_age, or no such receiver

    @property
    def final(self) -> bool:
        return self is not Outcome.RETRY

    @property
    def status(self) -> DeliveryStatus:
        return DeliveryStatus(self.value)


class ReceiverChange(enum.Enum):
    FAILING = "failing"      # raise receiver_failing
    RECOVERED = "recovered"  # resolve it


class QueuedLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def fingerprints(self) -> frozenset[str]: ...
    @property
    def group_key(self) -> str: ...
    @property
    def next_at(self) -> float: ...


@dataclass(frozen=True)
class Queued:
    """What ordering needs of a queued notification: its outbox id (creation order), the alerts it
    carries, its group and when it may be tried."""

    id: int
    fingerprints: frozenset[str]
    group_key: str
    next_at: float


Q = TypeVar("Q", bound=QueuedLike)


def pick(queue: Iterable[Q], now: float) -> tuple[Q | None, float | None]:
    """The first notification of one receiver's queue (in creation order: ascending id) that may be sent at
    `now`: it is due, and no earlier notification still queued concerns one of its alerts or its group. A
    resolve therefore never overtakes its trigger, even when the trigger waits for a retry or both were left
    by a crash. Stops at the first that may go (a queue that drains is not scanned whole each time).

    Returns (that notification, None), or (None, the earliest time one becomes due; None if none can)."""
    fps: set[str] = set()
    groups: set[str] = set()
    wake: float | None = None
    for q in queue:
        blocked = q.group_key in groups or not fps.isdisjoint(q.fingerprints)
        if not blocked:
            if q.next_at <= now:
                return q, None
            wake = q.next_at if wake is None else min(wake, q.next_at)
        fps |= q.fingerprints
        groups.add(q.group_key)
    return None, wake


def outcome(*, targets: int, permanent: bool | None, age: float, max_age: float) -> Outcome:
    """An attempt's result. targets: channels that should get the notification (0: all filter it out);
    permanent: None when the send succeeded, else whether the error is permanent; age: seconds since the
    notification was created."""
    if targets == 0:
        return Outcome.SKIPPED
    if permanent is None:
        return Outcome.SENT
    if permanent:
        return Outcome.FAILED
    return Outcome.DEAD if age >= max_age else Outcome.RETRY


def retry_at(attempts: int, now: float, retry_after: float | None, *, base: float, cap: float,
             jitter: float) -> float:
    """The next attempt after `attempts` failed ones: base·2^(attempts-1), capped, times a jitter in
    [0.5, 1] (drawn by the caller), and never sooner than the far end's Retry-After."""
    backoff = min(cap, base * 2 ** max(0, attempts - 1)) * jitter
    return now + max(backoff, retry_after or 0.0)


def streak_after(streak: int, result: Outcome, threshold: int) -> tuple[int, ReceiverChange | None]:
    """A receiver's count of failed deliveries in a row after one more result. Skipped is not delivered:
    it neither counts as a success (no reset, no recovery) nor as a failure, so receiver_failing does not
    flap when a filtered resolve falls between failures."""
    if result is Outcome.SKIPPED:
        return streak, None
    if result is Outcome.SENT:
        return 0, (ReceiverChange.RECOVERED if streak >= threshold else None)
    streak += 1
    return streak, (ReceiverChange.FAILING if streak == threshold else None)


def backoff(failures: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds before retrying the store after `failures` failed tries in a row (capped, jittered)."""
    return min(cap, base * 2 ** max(0, failures - 1)) * jitter
