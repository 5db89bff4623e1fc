"""Several active workers: each owns a fair share of the event log's partitions.

A worker holds one PostgreSQL session advisory lock per partition it owns (`{prefix}:worker:{n}`, leader.py
PartitionLocks, all on one connection) and aims at `ceil(16 / live workers)` of them (live workers: the
nodes' `application_name`s, node.py). Every `TRY_EVERY_S` it looks which partitions nobody holds (pg_locks),
takes free ones up to its share, and gives back what it holds over its share once that has lasted
`GRACE_S` (two workers starting together do not thrash) and nothing is free. A partition left free for
`ORPHAN_S` (a live worker that cannot take it) is taken over the share. A worker that dies frees all its
locks with its session; the others take its partitions at their next look.

When the owned set changes the writer restarts: stopped (it checkpoints its state), the locks given back,
then started on the new set (a full reload from the store: checkpoint + replay, for the owned partitions'
pipelines only; Worker.owns) and the consumer pulls the owned partitions only. Messages the previous owner
had not acked come back after the consumers' ack_wait; keyed dedup makes a redelivery change nothing.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from pipemon.cluster.leader import TRY_EVERY_S
from pipemon.log import PARTITIONS

log = logging.getLogger(__name__)

GRACE_S = 5.0    # over the fair share this long (and nothing free): give the extras back
ORPHAN_S = 10.0  # a partition free this long is taken even over the fair share


def fair_share(live_workers: int, partitions: int = PARTITIONS) -> int:
    return math.ceil(partitions / max(1, live_workers))


@dataclass(frozen=True)
class Move:
    take: frozenset[int] = frozenset()
    give: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.take or self.give)


class Balancer:
    """Decides, from what the worker owns, what anyone holds and how many workers live, what to take and
    what to give back (pure: `now` passed in)."""

    def __init__(self, partitions: int = PARTITIONS) -> None:
        self.partitions = partitions
        self.over_since: float | None = None
        self.free_since: float | None = None

    def decide(self, owned: set[int], held: set[int], live_workers: int, now: float) -> Move:
        share = fair_share(live_workers, self.partitions)
        free = sorted(set(range(self.partitions)) - held - owned)
        take = set(free[:max(0, share - len(owned))])
        left = [n for n in free if n not in take]
        if not left:
            self.free_since = None
        elif self.free_since is None:
            self.free_since = now
        elif now - self.free_since >= ORPHAN_S:
            take |= set(left)  # nobody else takes them: better over the share than unconsumed
            self.free_since = None
        give: set[int] = set()
        if len(owned) > share and not free:
            if self.over_since is None:
                self.over_since = now
            elif now - self.over_since >= GRACE_S:
                give = set(sorted(owned)[share:])  # the highest: a newcomer takes them from the lowest free
                self.over_since = None
        else:
            self.over_since = None
        return Move(frozenset(take), frozenset(give))


async def own_partitions(node) -> None:
    """The worker role with several active workers (instead of node._lead_worker's single leader)."""
    locks, balancer = node.partition_locks, Balancer()
    while True:
        await asyncio.sleep(TRY_EVERY_S)
        if node.bus.js is None:
            continue
        running = node.pm.writer.partitions if node.writer_running else None
        if locks.owned and not await asyncio.to_thread(locks.check):
            await _stop_writer(node)  # the session and its locks are gone: another worker may own them now
            continue
        if running is not None and running != frozenset(locks.owned):
            await _restart(node, Move())  # lost locks with the session: write only what is still ours
            continue
        held = await asyncio.to_thread(locks.held_anywhere)
        move = balancer.decide(set(locks.owned), held, node.view.live.get("worker", 1), time.monotonic())
        if move or (locks.owned and not node.writer_running):
            await _restart(node, move)


async def _restart(node, move: Move) -> None:
    locks = node.partition_locks
    started = time.monotonic()
    if move.take:
        await asyncio.to_thread(locks.take, sorted(move.take))
    await _stop_writer(node)
    if move.give:
        await asyncio.to_thread(locks.give, set(move.give))
    owned = frozenset(locks.owned)
    if not owned:
        return
    writer = node.pm.writer
    try:
        writer.partitions = owned
        await asyncio.to_thread(writer.start)  # reloads the owned pipelines' engine state from the store
        node.writer_running = True
        writer.not_serving = None
        await node.consumer.start(owned)
    except Exception as e:  # noqa: BLE001 - database or NATS away: give every partition back, retry later
        log.warning("could not start the writer on partitions %s: %s: %s", sorted(owned), type(e).__name__, e)
        await _stop_writer(node)
        await asyncio.to_thread(locks.release)
        return
    node.reloads.append(time.monotonic() - started)
    log.warning("writing partitions %s (%d of %d; writer restarted in %.1f s)",
                _ranges(owned), len(owned), PARTITIONS, time.monotonic() - started)


async def _stop_writer(node) -> None:
    from pipemon.cluster.node import STANDBY

    await node.stop_consuming()
    if node.writer_running:
        node.writer_running = False
        await asyncio.to_thread(node.pm.writer.stop)  # checkpoints: the next owner reloads from there
    node.pm.writer.not_serving = STANDBY


async def stop(node) -> None:
    """The node stops: the writer saves its state, then every partition is given back."""
    await _stop_writer(node)
    await asyncio.to_thread(node.partition_locks.release)


def _ranges(parts: frozenset[int] | set[int]) -> str:
    """0-7,12 for {0,…,7,12}."""
    out: list[str] = []
    for n in sorted(parts):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out)
