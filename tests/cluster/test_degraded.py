"""A node's loops under faults, without servers: a role loop that raises is logged and runs again; a
step-down is bounded even by a consumer task that swallowed its cancellation (Python 3.11's wait_for, as
nats-py uses it, can: a message arriving as the cancel lands). The PostgreSQL cut itself, with real
servers, is in test_cluster.py."""
from __future__ import annotations

import asyncio
import logging

from pipemon.cluster import node as node_mod
from pipemon.cluster.consumer import Consumer


def test_a_role_loop_that_fails_is_logged_and_started_again(monkeypatch, caplog):
    monkeypatch.setattr(node_mod, "TRY_EVERY_S", 0.0)
    turns: list[int] = []

    async def role() -> None:
        turns.append(1)
        if len(turns) == 1:
            raise RuntimeError("a bug in one turn")
        if len(turns) == 2:
            return  # a loop that ends is started again too
        await asyncio.Event().wait()  # the third run lives on

    async def go() -> None:
        task = asyncio.create_task(node_mod._kept_running("worker role", role))
        while len(turns) < 3:
            await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()  # a cancel (the node stopping) still ends it

    with caplog.at_level(logging.ERROR, logger="pipemon.cluster.node"):
        asyncio.run(asyncio.wait_for(go(), 10))
    said = [r for r in caplog.records if "worker role loop" in r.getMessage()]
    assert "failed" in said[0].getMessage() and said[0].exc_info is not None
    assert "ended" in said[1].getMessage()


def test_consumer_stop_is_bounded_by_a_task_that_swallows_its_cancel(caplog):
    async def go() -> None:
        release = asyncio.Event()

        async def stubborn() -> None:  # swallows its first cancellation, as a racing wait_for can
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
            await release.wait()

        async def obedient() -> None:
            await asyncio.sleep(3600)

        c = Consumer(pm=None, bus=None, names=None)  # type: ignore[arg-type]
        c._tasks = [asyncio.create_task(stubborn()), asyncio.create_task(obedient())]
        await asyncio.sleep(0)
        tasks = list(c._tasks)
        await asyncio.wait_for(c.stop(timeout=0.2), 10)  # returns: the step-down goes on
        assert not c.running
        assert tasks[1].cancelled()
        await asyncio.gather(tasks[0], return_exceptions=True)  # stop() cancelled it again: it ends
        assert tasks[0].cancelled()

    with caplog.at_level(logging.WARNING, logger="pipemon.cluster.consumer"):
        asyncio.run(go())
    assert any("did not stop within" in r.getMessage() for r in caplog.records)
