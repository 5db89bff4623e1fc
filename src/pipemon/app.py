"""Composition root: `build()` wires the store, the writer, the engine and the clock into one Pipemon."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy.engine import Engine

from pipemon.alerting import Alerting
from pipemon.clock import Clock, WallClock
from pipemon.config import Settings
from pipemon.evaluation import Evaluation
from pipemon.log import EventLog
from pipemon.log.memory import MemoryLog
from pipemon.notify import build_receivers, redact_httpx_logs
from pipemon.notify.delivery import Deliverer
from pipemon.store import db
from pipemon.worker import Worker

if TYPE_CHECKING:
    from pipemon.reload import Reloader

log = logging.getLogger(__name__)


@dataclass
class Pipemon:
    settings: Settings
    engine: Engine
    clock: Clock
    worker: Worker
    evaluation: Evaluation
    alerting: Alerting
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
            self.worker.start()
            if self.deliverer is not None:
                self.deliverer.start()
        self.started = True

    def stop(self) -> None:
        if not self.started:
            return
        if self.deliverer is not None:
            self.deliverer.stop()
        self.worker.stop()
        self.started = False

    def reconfigure(self, settings: Settings, timeout: float = 30.0) -> None:
        """Swap the settings live (a config reload): on the writer thread, between two batches, so no
        event is processed half under the old and half under the new; pending notifications stay pending.
        The API reads `self.settings` per request: it follows at once."""
        for key in list(self.worker.pipelines):  # match the globs here, off the writer: it then finds them
            settings.rule_for(key)                # memoised (most of a reload's work at fleet scale)
        if self.deliverer is not None:  # first: a notification the new routes make finds its receiver
            self.deliverer.reconfigure(build_receivers(settings.receivers),
                                       settings.alerting.receiver_failure_threshold)

        def swap(conn, now: float) -> None:
            changed = self.worker.reconfigure(conn, settings)
            self.evaluation.reconfigure(conn, self.worker, settings, now)
            self.alerting.reconfigure(conn, settings, now)
            if changed:
                log.info("config reload: %d pipelines changed owner", len(changed))
            self.settings = settings
        self.worker.call(swap, timeout=timeout)

    def close(self) -> None:
        self.stop()
        self.engine.dispose()


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
    evaluation = Evaluation(settings)
    alerting = Alerting(settings, evaluation)
    worker = Worker(engine, settings, clock, evaluation)
    pm = Pipemon(settings=settings, engine=engine, clock=clock, worker=worker, evaluation=evaluation,
                 alerting=alerting, db_url=db.normalize_url(db_url), log=MemoryLog(worker))
    if deliver:
        pm.deliverer = Deliverer(pm, build_receivers(settings.receivers), http,
                                 threshold=settings.alerting.receiver_failure_threshold)
        alerting.on_notifications.append(pm.deliverer.enqueue)
    return pm
