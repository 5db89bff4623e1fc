"""The event log: where an accepted event is kept until a worker has folded it into the store.

    api ──append(events)──▶ EventLog ──▶ worker (the writer) ──▶ store
                              memory: the writer itself (embedded, one process: 2xx = committed)
                              nats:   a JetStream stream (2xx = every PubAck of the request arrived)

One seam, two implementations: `--bus memory` hands events straight to the in-process writer (as pipemon
always did); `--bus nats://host:4222` appends them to a JetStream stream partitioned by pipeline, consumed
by `pipemon serve --role worker` nodes (cluster/consumer.py).
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Protocol

from pipemon.access import Caller, Role
from pipemon.model import Event, pipeline_key

PARTITIONS = 16  # subjects {prefix}.events.0 … .15; a power of two leaves room to split later
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class Appended(Protocol):
    @property
    def accepted(self) -> int: ...

    @property
    def duplicates(self) -> int: ...


class EventLog(Protocol):
    """Appends a request's events; returns once they are durable (raises Unavailable otherwise)."""

    async def append(self, events: list[Event], caller: Caller | None = None) -> Appended: ...

    def ready(self) -> str | None:
        """Why the log cannot take events now (for /readyz), or None."""
        ...


def check_prefix(prefix: str) -> str:
    """The prefix names a stream, its subjects and its consumers: letters, digits, _ and - only."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"--bus-prefix {prefix!r}: use 1-32 letters, digits, '_' or '-' (it names the "
                          "JetStream stream, its subjects and consumers)")
    return prefix


def owner_key(ev: Event) -> str:
    """The pipeline whose state this event changes: a task's root (or parent) pipeline, else its own."""
    top = ev.root or ev.parent
    return pipeline_key(top.namespace, top.name) if top is not None else ev.pipeline


@functools.lru_cache(maxsize=1 << 16)  # a fleet's pipelines: the hash once per pipeline, not per event
def partition_of(key: str, partitions: int = PARTITIONS) -> int:
    """A stable partition for a pipeline key (the same in every process and release)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def batch_id(events: list[Event]) -> str:
    """A message's Nats-Msg-Id: derived from its events' idempotency keys, so a client's retry of the same
    request makes the same ids and JetStream's duplicate window drops it."""
    h = hashlib.blake2b(digest_size=16)
    for ev in events:
        h.update(ev.key.encode())
    return h.hexdigest()


def split_by_partition(events: list[Event], partitions: int = PARTITIONS) -> dict[int, list[Event]]:
    out: dict[int, list[Event]] = {}
    for ev in events:
        out.setdefault(partition_of(owner_key(ev), partitions), []).append(ev)
    return out


CALLER_HEADER = "Pipemon-Caller"  # who sent a message's events: name, team, token id (api node -> worker)


def caller_header(caller: Caller | None) -> dict[str, str]:
    """The header carrying an ingest token's identity to the worker, which checks its team against the
    pipelines' owners (admission.py). None for org-wide callers: nothing to check."""
    if caller is None or (caller.team is None and caller.token_id is None):
        return {}
    return {CALLER_HEADER: json.dumps([caller.name, caller.team, caller.token_id, caller.role.value])}


def caller_of(headers: dict[str, str] | None) -> Caller | None:
    raw = (headers or {}).get(CALLER_HEADER)
    if not raw:
        return None
    name, team, token_id, role = json.loads(raw)
    return Caller(name, Role(role), team, token_id)

