"""The embedded event log: the in-process writer itself. `append` returns once the writer committed, so a
2xx means stored, exactly as a single pipemon process always answered."""
from __future__ import annotations

import asyncio

from pipemon.access import Caller
from pipemon.model import Event
from pipemon.writer.writer import IngestResult, Writer


class MemoryLog:
    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    async def append(self, events: list[Event], caller: Caller | None = None) -> IngestResult:
        # The writer answers every request within its request_timeout (503 when it could not start in time)
        return await asyncio.wrap_future(self.writer.submit(events, caller))

    def ready(self) -> str | None:
        return None  # the writer's own health is reported by readiness()
