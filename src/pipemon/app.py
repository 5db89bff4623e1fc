"""Composition root: `build()` wires the store, the writer and its stages, the deliverer and the clock into
one Pipemon."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy.engine import Engine

from pipemon.clock import Clock, WallClock
from pipemon.config import Settings
from pipemon.log import EventLog
from pipemon.log.memory import MemoryLog
from pipemon.notify import build_receivers, redact_httpx_logs
from pipemon.notify.delivery import Deliverer
from pipemon.store import db
from pipemon.writer.alerts import AlertStage
from pipemon.writer.health import HealthStage
from pipemon.writer.stages import Stages
from pipemon.writer.writer import Writer

if TYPE_CHECKING:
    from pipemon.reload import Reloader

log = logging.getLogger(__name__)


@dataclass
class Pipemon:
    settings: Settings
    db: Engine                    # SQLAlchemy's engine: the store's connection pool
    clock: Clock
    writer: Writer
    health: HealthStage
    alerts: AlertStage
    stages: Stages                # what the writer runs after its fold: health → alerts
    db_url: str = field(repr=False)  # may hold a password: show `safe_db_url` instead
    deliverer: Deliverer | None = None
    started: bool = field(default=False)
    reloader: Reloader | None = None   # set by `pipemon serve`: re-reads the config files on demand
    log: EventLog | None = None   # where ingest appends: the writer itself (memory) or NATS (cluster.node)
    node: Any = None              # cluster.node.Node when serving a role on NATS; None: one process

    @property
    def safe_db_url(self) -> str:
        """The database URL with its password hidden, for logs, errors and the start-up line."""
        return db.redact(self.db_url)

    def start(self, threaded: bool = True) -> None:
        if self.started:
            return
        if threaded:
            self.writer.start()
            if self.deliverer is not None:
                self.deliverer.start()
        self.started = True

    def stop(self) -> None:
        if not self.started:
            return
        if self.deliverer is not None:
            self.deliverer.stop()
        self.writer.stop()
        self.started = False

    def reconfigure(self, settings: Settings, timeout: float = 30.0) -> None:
        """Swap the settings live (a config reload): on the writer thread, between two batches, so no
        event is processed half under the old and half under the new; pending notifications stay pending.
        The API reads `self.settings` per request: it follows at once."""
        for key in list(self.writer.pipelines):  # match the globs here, off the writer: it then finds them
            settings.rule_for(key)                # memoised (most of a reload's work at fleet scale)
        if self.deliverer is not None:  # first: a notification the new routes make finds its receiver
            self.deliverer.reconfigure(build_receivers(settings.receivers),
                                       settings.alerting.receiver_failure_threshold)

        def swap(conn, now: float) -> None:
            changed = self.writer.reconfigure(conn, settings)
            self.stages.reconfigure(conn, self.writer, settings, now)
            if changed:
                log.info("config reload: %d pipelines changed owner", len(changed))
            self.settings = settings
        self.writer.call(swap, timeout=timeout)

    def close(self) -> None:
        self.stop()
        self.db.dispose()


def build(db_url: str = "sqlite:///pipemon.db", settings: Settings | None = None, clock: Clock | None = None,
          migrate: bool = True, synchronous: str = "FULL", deliver: bool = True,
          http: httpx.Client | None = None) -> Pipemon:
    """Wire a pipemon. `deliver=False` (replay) decides notifications but sends none."""
    redact_httpx_logs()  # httpx logs request URLs, and a Slack webhook URL is a secret
    settings = settings or Settings()
    clock = clock or WallClock()
    engine = db.open_engine(db_url, synchronous=synchronous)
    if migrate:
        db.upgrade(engine)
    health = HealthStage(settings)
    alerts = AlertStage(settings, health)
    stages = Stages(health, alerts)
    writer = Writer(engine, settings, clock, stages)
    pm = Pipemon(settings=settings, db=engine, clock=clock, writer=writer, health=health, alerts=alerts,
                 stages=stages, db_url=db.normalize_url(db_url), log=MemoryLog(writer))
    if deliver:
        pm.deliverer = Deliverer(pm, build_receivers(settings.receivers), http,
                                 threshold=settings.alerting.receiver_failure_threshold)
        alerts.on_notifications.append(pm.deliverer.enqueue)
    return pm
