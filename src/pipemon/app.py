"""Composition root: `build()` wires the store, the writer, the engine and the clock into one Pipemon."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from pipemon.clock import Clock, WallClock
from pipemon.config import Settings
from pipemon.evaluation import Evaluation
from pipemon.store import db
from pipemon.worker import Worker

log = logging.getLogger(__name__)


@dataclass
class Pipemon:
    settings: Settings
    engine: Engine
    clock: Clock
    worker: Worker
    evaluation: Evaluation
    db_url: str
    started: bool = field(default=False)

    def start(self, threaded: bool = True) -> None:
        if self.started:
            return
        if threaded:
            self.worker.start()
        self.started = True

    def stop(self) -> None:
        if not self.started:
            return
        self.worker.stop()
        self.started = False

    def close(self) -> None:
        self.stop()
        self.engine.dispose()


def build(db_url: str = "sqlite:///pipemon.db", settings: Settings | None = None, clock: Clock | None = None,
          migrate: bool = True, synchronous: str = "FULL") -> Pipemon:
    settings = settings or Settings()
    clock = clock or WallClock()
    engine = db.open_engine(db_url, synchronous=synchronous)
    if migrate:
        db.upgrade(engine)
    evaluation = Evaluation(settings)
    worker = Worker(engine, settings, clock, evaluation)
    return Pipemon(settings=settings, engine=engine, clock=clock, worker=worker, evaluation=evaluation,
                   db_url=db.normalize_url(db_url))
