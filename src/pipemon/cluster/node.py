"""One pipemon process in a cluster: its role, and the background tasks that role runs.

    role        ingest (POST)            runs                                  needs
    api         appends to the log       -                                     NATS (PostgreSQL for reads)
    worker      appends to the log       the writer + consumers: while leading NATS, PostgreSQL
                                         (leader mode), or for the partitions
                                         it owns (partitioned mode, partitions.py)
    dispatcher  appends to the log       a Deliverer (all dispatchers at once;  PostgreSQL (NATS for wake-ups)
                                         the watchdog while leading its lock)
    all         appends to the log       both                                  NATS, PostgreSQL

Every role serves the HTTP API (reads, /readyz, /metrics); ingest on any node goes to the log. Operator
actions change the engine's state, so a worker node takes them: silences on any worker (the others read
them from the store), acknowledge/resolve/feedback on the worker owning the pipeline's partition; another
node answers 503 naming why. `--role all --bus memory` (the embedded default) does not use this
module: app.build() wires the in-process writer as the log.
"""
from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa

from pipemon.cluster import partitions, watchdog
from pipemon.cluster.consumer import Consumer
from pipemon.cluster.dispatcher import new_deliverer
from pipemon.cluster.leader import TRY_EVERY_S, Leadership, PartitionLocks
from pipemon.cluster.relay import Relay
from pipemon.log import PARTITIONS
from pipemon.log.nats import Names, NatsLog
from pipemon.model import DeliveryStatus

log = logging.getLogger(__name__)
trace = logging.getLogger("pipemon.trace")  # hop times (benchmarks/cluster.py turns it on)
STEP_DOWN_S = 5.0  # the longest a step-down waits for the consumers to stop

PROBE_EVERY_S = 2.0
STANDBY = "this node does not lead the worker role now (standby or api/dispatcher); operator actions are " \
          "taken by the leading worker: retry, or send them to it"


class Role(enum.StrEnum):
    ALL = "all"
    API = "api"
    WORKER = "worker"
    DISPATCHER = "dispatcher"

    @property
    def works(self) -> bool:
        return self in (Role.ALL, Role.WORKER)

    @property
    def dispatches(self) -> bool:
        return self in (Role.ALL, Role.DISPATCHER)


def application_name(prefix: str, role: Role, node_id: str) -> str:
    """How this node names its PostgreSQL sessions: the cluster counts its live members from them."""
    return f"pipemon:{prefix}:{role.value}:{node_id}"


@dataclass
class ClusterView:
    """What the last probe of the database saw (read by /readyz and /metrics without waiting)."""

    database: str | None = "not probed yet"   # None: reachable
    outbox_depth: int | None = None
    oldest_undelivered_s: float | None = None
    live: dict[str, int] = field(default_factory=dict)  # worker / dispatcher / api -> live nodes


class Node:
    def __init__(self, pm, role: Role, bus_url: str, prefix: str, node_id: str | None = None, *,
                 watchdog_receiver: str | None = None, watchdog_every: float = 300.0,
                 partitioned: bool = False) -> None:
        self.pm, self.role = pm, role
        # several active workers, each owning a share of the partitions (partitions.py); False: one leads
        self.partitioned = partitioned
        self.watchdog_receiver, self.watchdog_every = watchdog_receiver, watchdog_every
        self.heartbeats = 0
        self.node_id = node_id or uuid.uuid4().hex[:8]
        self.names = Names(prefix)
        self.bus = NatsLog(bus_url, self.names, name=application_name(prefix, role, self.node_id))
        self.consumer = Consumer(pm, self.bus, self.names)
        self.worker_lead = Leadership(pm.db, f"{prefix}:worker")
        self.partition_locks = PartitionLocks(pm.db, f"{prefix}:worker", PARTITIONS)
        self.reloads: list[float] = []  # seconds each writer restart on a new set of partitions took
        self.watchdog_lead = Leadership(pm.db, f"{prefix}:watchdog")
        self._subscribed = False  # to the dispatchers' wake-ups
        self.view = ClusterView()
        self.writer_running = False
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.relay = Relay(self)  # operator changes sent here reach the worker that keeps them
        pm.alerts.on_notifications.append(self._wake_dispatcher)

    # --- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.pm.log = self.bus
        self.pm.writer.not_serving = STANDBY
        await self.bus.start()
        loops = [("lag", self.consumer.watch_lag), ("probe", self._probe)]
        if self.role.works:
            own = functools.partial(partitions.own_partitions, self)
            loops.append(("worker role", own if self.partitioned else self._lead_worker))
            loops.append(("relay", self.relay.keep_subscribed))
        if self.role.dispatches:
            loops.append(("dispatcher role", self._dispatch))
            if self.watchdog_receiver:
                loops.append(("watchdog", self._watchdog))
        self._tasks = [asyncio.create_task(_kept_running(what, fn)) for what, fn in loops]
        self.pm.started = True

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.relay.close()
        if self.partitioned and self.role.works:
            await partitions.stop(self)
        await self._step_down_worker()
        await self._step_down_dispatcher()
        await self.bus.close()
        self.pm.started = False

    # --- worker: the writer and the consumers, while leading ------------------------------------------------
    async def _lead_worker(self) -> None:
        """Once a second: take the lead (and start the writer, then the consumers) or, leading, check that
        the lock's session and the writer still live, else step down. A failed turn steps down and the next
        turn tries again: the loop never ends while the node runs."""
        lead = self.worker_lead
        while True:
            try:
                if not (lead.leading and self.writer_running and self.consumer.running):
                    await self._take_over_worker()
                elif not await asyncio.to_thread(lead.check):
                    await self._step_down_worker()
                elif not self.pm.writer.alive():
                    log.error("the writer has stopped (%s); stepping down to start it again",
                              self.pm.writer.health().died or "its thread ended")
                    await self._step_down_worker()
            except Exception:  # noqa: BLE001 - logged; the next turn starts from a clean standby
                log.exception("the worker role failed; stepping down, trying again in %.0f s", TRY_EVERY_S)
                await self._step_down_worker()
            await asyncio.sleep(TRY_EVERY_S)

    async def _take_over_worker(self) -> None:
        if self.bus.js is None or not await asyncio.to_thread(self.worker_lead.acquire):
            return
        try:
            if not self.writer_running:
                await asyncio.to_thread(self.pm.writer.start)  # reloads the engine state from the store
                self.writer_running = True
            self.pm.writer.not_serving = None
            if not self.consumer.running:
                await self.consumer.start()
        except Exception as e:  # noqa: BLE001 - database or NATS away: give the lead back, retry
            log.warning("could not take over as worker: %s: %s", type(e).__name__, e)
            await self._step_down_worker()

    async def _step_down_worker(self) -> None:
        """Each step runs whatever the one before did: the lock is always given back."""
        try:  # unacked messages come back to the next leader; a stop stuck on NATS is left behind
            await self.consumer.stop(STEP_DOWN_S)
        except Exception:  # noqa: BLE001
            log.exception("stopping the consumers failed")
        if self.writer_running:
            self.writer_running = False
            try:
                await asyncio.to_thread(self.pm.writer.stop)
            except Exception:  # noqa: BLE001
                log.exception("stopping the writer failed")
        self.pm.writer.not_serving = STANDBY
        try:
            await asyncio.to_thread(self.worker_lead.release)
        except Exception:  # noqa: BLE001 - release() closes its session in any case
            log.exception("releasing the worker lock failed")

    async def stop_consuming(self) -> None:
        try:  # unacked messages come back to the partitions' next owner
            await asyncio.wait_for(self.consumer.stop(), STEP_DOWN_S)
        except asyncio.TimeoutError:
            log.warning("the consumers did not stop within %.0f s; going on", STEP_DOWN_S)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def kept_partitions(self) -> set[int]:
        """The partitions whose pipelines this node's writer keeps now (operator changes for them are
        answered here): none unless the writer serves; all while leading; the owned share if partitioned."""
        if not self.writer_running or self.pm.writer.not_serving is not None:
            return set()
        if self.partitioned:
            return set(self.partition_locks.owned)
        return set(range(PARTITIONS)) if self.worker_lead.leading else set()

    def leads_work(self) -> bool:
        """Whether this node's writer runs now (it leads, or owns partitions)."""
        return bool(self.partition_locks.owned) if self.partitioned else self.worker_lead.leading

    def _wake_dispatcher(self, notifications) -> None:
        """After a commit that wrote notifications (on the writer thread): tell the dispatchers."""
        loop, nc = self._loop, self.bus.nc
        if trace.isEnabledFor(logging.DEBUG):
            trace.debug("wake groups=%s at=%.6f", ",".join(sorted({n.group_key for n in notifications})),
                        time.time())
        if loop is not None and nc is not None:
            asyncio.run_coroutine_threadsafe(_publish_quietly(nc, self.names.wake), loop)

    # --- dispatcher: a Deliverer sharing the outbox with the other dispatchers -----------------------------
    async def _dispatch(self) -> None:
        """Run the Deliverer for the node's life and have NATS wake-ups claim at once (until NATS answers,
        it claims every second). Never returns: the node keeps its loops running."""
        while True:
            if self.pm.deliverer is None:
                d = new_deliverer(self.pm)
                d.start()
                self.pm.deliverer = d
            if not self._subscribed and self.bus.nc is not None:
                await self.bus.nc.subscribe(self.names.wake, cb=self._woken)
                self._subscribed = True
            await asyncio.sleep(TRY_EVERY_S)

    async def _watchdog(self) -> None:
        """On the one dispatcher holding the `{prefix}:watchdog` lock, while the cluster is healthy: a
        heartbeat every watchdog_every s."""
        assert self.watchdog_receiver is not None
        lead = self.watchdog_lead
        while True:
            await asyncio.sleep(self.watchdog_every)
            if not await asyncio.to_thread(lead.check if lead.leading else lead.acquire):
                continue
            d = self.pm.deliverer
            if d is None:
                continue
            why = watchdog.unhealthy(self.bus.ready(), self.view.database, self.view.live.get("worker", 0),
                                     self.view.oldest_undelivered_s)
            if why is not None:
                log.warning("watchdog: no heartbeat, the cluster is not healthy (%s)", why)
                continue
            beat = watchdog.heartbeat(self.watchdog_receiver, self.pm.clock.now(), self.node_id)
            try:
                await asyncio.to_thread(d.send_now, [beat])
                self.heartbeats += 1
            except Exception as e:  # noqa: BLE001 - the receiver is away: the outside pager will notice
                log.warning("watchdog: the heartbeat to %s failed: %s", self.watchdog_receiver, e)

    async def _woken(self, _msg) -> None:
        trace.debug("woken at=%.6f", time.time())
        d = self.pm.deliverer
        if d is not None:
            d.poll_soon()

    async def _step_down_dispatcher(self) -> None:
        d, self.pm.deliverer = self.pm.deliverer, None
        if d is not None:  # gives back its claims: the other dispatchers take them at once
            await asyncio.to_thread(d.stop)
        await asyncio.to_thread(self.watchdog_lead.release)

    # --- what the node knows of the cluster ---------------------------------------------------------------
    async def _probe(self) -> None:
        while True:
            self.view = await asyncio.to_thread(self._probe_once)
            await asyncio.sleep(PROBE_EVERY_S)

    def _probe_once(self) -> ClusterView:
        view = ClusterView(database=None)
        try:
            with self.pm.db.connect() as conn:
                depth, oldest = conn.execute(sa.text(
                    "SELECT count(*), min(created_at) FROM notifications WHERE status = :pending"),
                    {"pending": DeliveryStatus.PENDING.value}).one()
                view.outbox_depth = int(depth)
                view.oldest_undelivered_s = max(0.0, time.time() - oldest) if oldest is not None else 0.0
                if conn.dialect.name == "postgresql":
                    names = conn.execute(sa.text(
                        "SELECT DISTINCT application_name FROM pg_stat_activity WHERE application_name "
                        "LIKE :p"), {"p": f"pipemon:{self.names.prefix}:%"}).scalars().all()
                    view.live = count_members(names)
        except Exception as e:  # noqa: BLE001 - away: say so, keep serving
            view.database = f"unreachable: {type(e).__name__}"
        return view

    def readiness(self) -> tuple[dict[str, str], dict[str, str]]:
        """(components, failing): every dependency and role part with its state; `failing` the ones that
        keep this node from its job (an api node stays ready with the database away: it keeps accepting)."""
        comp: dict[str, str] = {}
        failing: dict[str, str] = {}
        bus = self.bus.ready()
        comp["event_log"] = bus or f"connected ({self.names.stream})"
        if bus:
            failing["event_log"] = bus
        comp["database"] = self.view.database or "reachable"
        if self.view.database and self.role is not Role.API:
            failing["database"] = self.view.database
        if self.role.works and self.partitioned:
            owned = self.partition_locks.owned
            running = self.pm.writer.partitions if self.writer_running else None
            if owned and running is not None:
                w = self.pm.writer.health()
                comp["worker"] = f"leading: consuming partitions {partitions._ranges(running)} " \
                                 f"({len(running)} of {PARTITIONS})"
                if not w.alive:
                    failing["worker"] = f"the writer has stopped: {w.died or 'not running'}"
            elif owned:
                comp["worker"] = f"starting: loading the state of partitions {partitions._ranges(owned)}"
            else:
                comp["worker"] = "standby: other workers own every partition" \
                    if not self.partition_locks.problem else f"standby: {self.partition_locks.problem}"
        elif self.role.works:
            if self.worker_lead.leading:
                w = self.pm.writer.health()
                comp["worker"] = f"leading: consuming partitions 0-{PARTITIONS - 1}"
                if not w.alive:
                    failing["worker"] = f"the writer has stopped: {w.died or 'not running'}"
            else:
                comp["worker"] = "standby: another worker leads" if not self.worker_lead.problem \
                    else f"standby: {self.worker_lead.problem}"
        if self.role.dispatches:
            d = self.pm.deliverer
            comp["dispatcher"] = "active: claiming and delivering the outbox with the other dispatchers"
            if d is None or not d.alive():
                failing["dispatcher"] = comp["dispatcher"] = "the deliverer is not running"
            if self.watchdog_receiver:
                comp["watchdog"] = "leading: sending the heartbeats" if self.watchdog_lead.leading \
                    else "standby: another dispatcher sends the heartbeats"
        return comp, failing


def count_members(application_names: list[str]) -> dict[str, int]:
    """Live nodes by role from their session names (`all` counts as a worker and a dispatcher)."""
    nodes: dict[str, set[str]] = {"api": set(), "worker": set(), "dispatcher": set()}
    for name in application_names:
        parts = name.split(":")
        if len(parts) != 4:
            continue
        role, node = parts[2], parts[3]
        for r in (("worker", "dispatcher") if role == "all" else (role,)):
            if r in nodes:
                nodes[r].add(node)
    return {r: len(v) for r, v in nodes.items()}


async def _kept_running(what: str, loop) -> None:
    """Run one of the node's loops for the node's life: one that raises (or returns) is logged and started
    again, never left dead in silence (a dead role loop once left a node never leading again)."""
    while True:
        try:
            await loop()
            log.error("the %s loop ended; starting it again", what)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("the %s loop failed; starting it again in %.0f s", what, TRY_EVERY_S)
        await asyncio.sleep(TRY_EVERY_S)


async def _publish_quietly(nc, subject: str) -> None:
    try:
        await nc.publish(subject, b"")
    except Exception as e:  # noqa: BLE001 - the dispatcher still polls every second
        log.debug("waking the dispatchers failed: %s", e)
