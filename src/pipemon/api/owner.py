"""An operator's change (acknowledge, resolve, silences, finding feedback, tokens) runs in the writer that
keeps what it changes. In one process that is this one. In a cluster it may be another node's writer (this
is an api or dispatcher node, a standby, or another worker owns the pipeline's partition): then the request
is relayed whole, as it came in, to the worker that keeps it (cluster/relay.py), which answers it as if it
had been sent there; the caller gets that answer. Without a relay, or after `MAX_HOPS`, the caller gets the
503 naming why."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from pipemon.errors import Elsewhere

RELAY_HOPS = "x-pipemon-relay-hops"  # how many nodes relayed this request already
MAX_HOPS = 2  # any worker, then the owner of the partition it named


class Relayed(Exception):
    """The request was answered by the worker that keeps what it changes: send its response as is."""

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__("relayed")


def hops(request: Request) -> int:
    raw = request.headers.get(RELAY_HOPS, "0")
    return int(raw) if raw.isdigit() and len(raw) < 3 else MAX_HOPS  # garbage: relay no further


async def on_owner(request: Request, fn: Callable[[Any, float], Any]) -> Any:
    """fn(conn, now) in this node's writer, or the whole request answered by the node whose writer keeps
    it (raises Relayed, which the app turns into that node's response)."""
    pm = request.app.state.pm
    try:
        return await asyncio.wrap_future(pm.writer.submit_call(fn))
    except Elsewhere as e:
        relay = getattr(pm.node, "relay", None)  # pm.node: None in one process
        n = hops(request)
        if relay is None or n >= MAX_HOPS:
            raise
        raise Relayed(await relay.send(request, e, n + 1)) from None
