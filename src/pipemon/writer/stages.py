"""The stages after the fold, in the order the writer calls them, all inside its transaction.

    fold (fold.py, the writer's own)  events → pipelines, runs, lineage
      → health (health.py)            runs and the clock → health, detector verdicts, findings, checkpoints
      → alerts (alerts.py)            the signals health raised → alerts → notifications in the outbox

Each method below is that order written out: a stage sees what the one before it decided in the same
transaction, and nothing is called through a hidden list of hooks. After the commit, the alerts stage
hands its new notifications to the deliverer (`AlertStage.on_notifications`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sqlalchemy.engine import Connection, Engine

from pipemon.config import Settings
from pipemon.engine.detect import Verdict
from pipemon.model import Event

if TYPE_CHECKING:
    from pipemon.writer.alerts import AlertStage
    from pipemon.writer.fold import RunChange
    from pipemon.writer.health import HealthStage
    from pipemon.writer.writer import Writer


class Stage(Protocol):
    """What the writer asks of what follows its fold, always inside its transaction."""

    def load(self, conn: Connection, writer: Writer, now: float) -> None: ...

    def on_changes(self, conn: Connection, changes: list[RunChange], events: list[Event],
                   now: float) -> None: ...

    def on_tick(self, conn: Connection, now: float) -> None: ...

    def on_stop(self, conn: Connection, now: float) -> None: ...

    def maintain(self, engine: Engine) -> None: ...

    def after_commit(self) -> None: ...


class Stages:
    """health → alerts, as the writer's Stage."""

    def __init__(self, health: HealthStage, alerts: AlertStage) -> None:
        self.health = health
        self.alerts = alerts

    def load(self, conn: Connection, writer: Writer, now: float) -> None:
        self.health.load(conn, writer, now)  # the checkpoint, then a replay that raises no alerts
        self.alerts.load(conn, writer, now)  # open alerts, silences, groups and timers

    def on_changes(self, conn: Connection, changes: list[RunChange], events: list[Event], now: float) -> None:
        self.alerts.on_events(events)        # lineage first: the alerts below name what is downstream
        out = self.health.on_changes(conn, changes, events, now)
        self.alerts.on_outcome(conn, out, now)

    def on_tick(self, conn: Connection, now: float) -> None:
        out = self.health.on_clock(now)      # lateness, expiry
        self.alerts.on_clock(conn, now, out)  # alert timers, escalations; mutes from silences and windows
        self.health.write_tick(conn, out, now)
        self.alerts.on_outcome(conn, out, now)
        self.health.housekeep(conn, now)     # checkpoint and retention, when due

    def on_stop(self, conn: Connection, now: float) -> None:
        self.health.on_stop(conn, now)

    def maintain(self, engine: Engine) -> None:
        self.health.maintain(engine)

    def after_commit(self) -> None:
        self.alerts.after_commit()

    # --- from outside the writer's own work (on its thread, through Writer.call) ---------------------
    def reconfigure(self, conn: Connection, writer: Writer, settings: Settings, now: float) -> None:
        out = self.health.reconfigure(conn, writer, settings, now)
        self.alerts.on_outcome(conn, out, now)
        self.alerts.reconfigure(conn, settings, now)

    def feedback(self, conn: Connection, pipeline: str, metric: str, verdict: Verdict, now: float) -> None:
        """An operator's verdict on a finding: the detector learns it; alerts follow what changed."""
        out = self.health.feedback(conn, pipeline, metric, verdict, now)
        self.alerts.on_outcome(conn, out, now)
