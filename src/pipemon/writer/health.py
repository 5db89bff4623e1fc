"""The health stage: runs the pure Judge (engine/judge.py) inside the writer's transaction and stores
what it decided.

Per transaction: the health view of each pipeline whose health moved (what the API reads), and the
findings. Every `CHECKPOINT_S`: the engine's full state (health windows and detector baselines, JSON),
the hourly and daily rollups, and the id of the last event they reflect. After a restart the engine
loads the checkpoint and replays the runs that events after that id touched, so no learning is lost
(a run in flight at the checkpoint may be counted twice: at-least-once, documented).
What it decides (an Outcome: signals, findings, state changes) goes back to the caller, stages.py, which
hands it to the alerts stage.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
from sqlalchemy.engine import Connection

from pipemon import calendars
from pipemon.config import Settings
from pipemon.engine.detect import Verdict
from pipemon.engine.judge import Judge, Outcome, spec_inputs
from pipemon.errors import Elsewhere
from pipemon.log import partition_of
from pipemon.model import Event, Run, RunStatus
from pipemon.store import maintenance
from pipemon.store import state as st
from pipemon.store import writes

if TYPE_CHECKING:
    from pipemon.writer.fold import RunChange
    from pipemon.writer.writer import Writer

log = logging.getLogger(__name__)

CHECKPOINT_S = 5.0
EXPIRE_S = 60.0
VIEW_FLUSH_S = 1.0  # metrics-only view updates are written at most this often; state changes at once
STATS_S = 30.0      # how often PostgreSQL's planner statistics are checked (store/maintenance.py)
RETENTION_S = 60.0      # a slice of the retention work every minute of wall time …
RETENTION_SLICE = 500   # … of at most this many pipelines, so the writer never stops for long;
RETENTION_EVERY = 86400.0  # each pipeline is swept once a day (of the engine's clock)
HOUR = 3600.0
DAY = 86400.0

class HealthStage:
    def __init__(self, settings: Settings, checkpoint_s: float = CHECKPOINT_S) -> None:
        self.judge = Judge(settings, calendars.lookup(time.time()))
        self.checkpoint_s = checkpoint_s
        self.views = True                      # replay turns them off: nobody reads its throwaway store
        self._ids: dict[str, int] = {}
        self._dirty: set[str] = set()          # engine state changed since the last checkpoint
        self._stale_views: set[str] = set()    # metrics moved, view not yet written
        self._view_written: dict[str, float] = {}
        self._rollups: dict[tuple[int, str, float], list[float]] = {}
        self._last_checkpoint = time.monotonic()
        self._last_stats = time.monotonic()
        self._vacuum_due = False
        self._last_expire = 0.0
        self._last_retention = -1e18
        self._swept_until: dict[int, float] = {}  # pipeline id -> engine time before which it needs no sweep
        self._owns: Callable[[str], bool] = lambda pipeline: True  # the writer's partitions (Writer.owns)
        self._partitions: frozenset[int] | None = None

    # --- start-up ---------------------------------------------------------------------------------------
    def load(self, conn: Connection, worker: Writer, now: float) -> None:
        """Load the checkpoint, register every known pipeline this writer owns, then replay what came after
        it (with several active workers: the owned partitions' pipelines only, from their own marks)."""
        self._ids = {k: rec.id for k, rec in worker.pipelines.items()}
        by_id = {rec.id: rec for rec in worker.pipelines.values()}
        self._owns = worker.owns
        self._partitions = worker.partitions
        self._stale_views = {p for p in self._stale_views if worker.owns(p)}
        # Rollups not checkpointed yet may name pipelines of a rolled-back transaction: their rows are gone,
        # and the checkpoint's upsert would violate the foreign key on this and every later reload.
        self._rollups = {k: v for k, v in self._rollups.items() if k[0] in by_id}
        self.judge = Judge(self.judge.settings, self.judge.holidays, team_of=_team_of(worker))
        for r in st.load_engine_state(conn):
            rec = by_id.get(r.pipeline_id)
            if rec is not None and worker.owns(rec.key):
                self.judge.load_json(rec.key, msgspec.json.decode(r.health),
                                      msgspec.json.decode(r.detect) if r.detect else None, now)
        for rec in worker.pipelines.values():
            if worker.owns(rec.key):
                self.judge.ensure(rec.key, rec.first_seen, now)
        mark = self._mark(conn)
        touched = [k for k in st.runs_touched_since(conn, mark)
                   if k[0] in by_id and worker.owns(by_id[k[0]].key)]
        out = Outcome()
        if touched:
            rows = writes.load_runs(conn, touched)
            replay = sorted((writes.run_from_row(by_id[pid].key, row) for (pid, _), row in rows.items()),
                            key=lambda r: (r.ended_at or r.started_at))
            for run in replay:
                if run.counts:
                    self.judge.on_run(run.pipeline, by_id[self._ids[run.pipeline]].first_seen, None, run,
                                       run.ended_at or run.started_at, out=out)
            log.info("replayed %d runs after checkpoint %d", len(replay), mark)
        self.write(conn, out, now, replaying=True)
        self.checkpoint(conn, now)

    def _mark(self, conn: Connection) -> int:
        """The event id the stored engine state reflects: one mark per partition when partitions are owned
        apart (each owner checkpoints its own), the oldest of the owned ones; the single mark otherwise."""
        single = st.get_checkpoint(conn, "engine")
        if self._partitions is None:
            return single
        marks = [st.get_checkpoint(conn, f"engine:{n}") or single for n in self._partitions]
        return min(marks, default=single)

    def reconfigure(self, conn: Connection, worker: Writer, settings: Settings, now: float) -> Outcome:
        """New settings (a config reload, on the writer thread): pipelines the config now declares join the
        engine, and a pipeline whose schedule, grace or sensitivity changed is re-declared to its
        detectors (their learned baselines stay)."""
        eng = self.judge
        old = eng.settings
        eng.reconfigure(settings, now)
        out = Outcome()
        for rec in worker.pipelines.values():
            self._ids[rec.key] = rec.id
            if not worker.owns(rec.key):
                continue
            if rec.key not in eng.health:
                eng.ensure(rec.key, rec.first_seen, now)
                out.changed.add(rec.key)
            elif spec_inputs(old.rule_for(rec.key), eng.calendar(rec.key, old)) != \
                    spec_inputs(settings.rule_for(rec.key), eng.calendar(rec.key)):
                eng.detect.configure(rec.key, eng.spec_for(rec.key), now=now)
                out.changed.add(rec.key)
        self.write(conn, out, now)
        return out

    # --- the writer's stage (stages.py calls these in order) -------------------------------------------
    def on_changes(self, conn: Connection, changes: list[RunChange], events: list[Event],
                   now: float) -> Outcome:
        out = Outcome()
        for ev in events:
            if ev.parent is None and ev.pipeline not in self.judge.health:
                self.judge.ensure(ev.pipeline, ev.time, now)
                out.changed.add(ev.pipeline)
        schemas = _schemas_by_run(events)
        for pipeline, (cron, tz) in _event_schedules(events).items():
            self.judge.event_schedule(pipeline, cron, tz, now)
        for ch in changes:
            rec = ch.pipeline
            self._ids[rec.key] = rec.id
            run = ch.after
            if not run.counts:
                continue  # tasks reach health through their parent; a pending parent once it speaks
            before = ch.before if ch.before is not None and ch.before.counts else None  # new to the engine
            self.judge.on_run(rec.key, rec.first_seen, before, run, now,
                               schemas.get((rec.key, run.run_id)), out=out)
            if run.status is not RunStatus.RUNNING and (before is None or before.status is RunStatus.RUNNING):
                self._roll(rec.id, run)
        self.write(conn, out, now)
        return out

    def on_clock(self, now: float) -> Outcome:
        """What the clock alone decides (lateness, expired state); written by `write_tick`."""
        out = self.judge.on_tick(now)
        if now - self._last_expire >= EXPIRE_S:
            self.judge.expire(now, out)
            self._last_expire = now
        return out

    def write_tick(self, conn: Connection, out: Outcome, now: float) -> None:
        out.changed |= self._stale_views  # the coalesced metrics of busy pipelines
        self.write(conn, out, now)

    def housekeep(self, conn: Connection, now: float) -> None:
        """The checkpoint and a slice of retention, when due (after a tick's writes)."""
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_s:
            self.checkpoint(conn, now)
        if time.monotonic() - self._last_retention >= RETENTION_S:
            self.retain(conn, now)

    def maintain(self, engine) -> None:
        """Between transactions (the writer calls it after a tick): work that cannot run inside one."""
        if self._vacuum_due:
            self._vacuum_due = False
            maintenance.vacuum_if_needed(engine)

    def on_stop(self, conn: Connection, now: float) -> None:
        self.checkpoint(conn, now)

    def feedback(self, conn: Connection, pipeline: str, metric: str, verdict: Verdict, now: float) -> Outcome:
        if not self._owns(pipeline):  # several writers: its detectors live in its partition's owner
            raise Elsewhere(f"{pipeline} is kept by the worker owning partition {partition_of(pipeline)}, "
                            "not this one", partition=partition_of(pipeline))
        out = Outcome()
        self.judge.feedback(pipeline, metric, verdict, now, out)
        self._dirty.add(pipeline)
        self.write(conn, out, now)
        return out

    # --- writing ----------------------------------------------------------------------------------------
    def write(self, conn: Connection, out: Outcome, now: float, replaying: bool = False) -> None:
        if not out:
            return
        # A view is rewritten at once when the state, reason or conditions moved; when only its metrics
        # did, at most once per VIEW_FLUSH_S per pipeline (a busy pipeline's runs coalesce; the rest
        # is flushed by the clock).
        mono = time.monotonic()
        due = set(out.changed) if self.views else set()
        for p in (out.measured - out.changed) if self.views else ():
            if replaying or mono - self._view_written.get(p, -1e18) >= VIEW_FLUSH_S:
                due.add(p)
            else:
                self._stale_views.add(p)
        self._dirty |= out.changed | out.measured
        views = []
        for p in due:
            pid = self._ids.get(p)
            if pid is None:
                continue
            v = self.judge.view(p, now)
            views.append((pid, v["state"], v["reason"], v["state_since"], st.dumps(v), now))
            self._view_written[p] = mono
        self._stale_views -= due
        st.upsert_views(conn, views)
        st.insert_findings(conn, ((self._ids[f.pipeline_id], f) for f in out.findings
                                  if f.pipeline_id in self._ids))

    def checkpoint(self, conn: Connection, now: float) -> None:
        """Engine state of the pipelines that changed, the rollups, and the event id they reflect."""
        rows = []
        for p in self._dirty:
            pid = self._ids.get(p)
            if pid is not None and p in self.judge.health:
                health, detect = self.judge.to_json(p)
                rows.append((st.dumps(health), st.dumps(detect), pid))
        st.save_engine_state(conn, rows)
        st.upsert_rollups(conn, [(pid, period, start, *vals)
                                 for (pid, period, start), vals in self._rollups.items()])
        mark = st.max_event_id(conn)  # every event of the owned partitions is ours and committed before it
        if self._partitions is None:
            st.set_checkpoint(conn, "engine", mark, now)
        else:
            for n in sorted(self._partitions):
                st.set_checkpoint(conn, f"engine:{n}", mark, now)
        if time.monotonic() - self._last_stats >= STATS_S:
            maintenance.refresh_statistics(conn)
            self._vacuum_due = True  # after this transaction: VACUUM cannot run inside one
            self._last_stats = time.monotonic()
        self._dirty.clear()
        self._rollups.clear()
        self._last_checkpoint = time.monotonic()

    def retain(self, conn: Connection, now: float) -> dict[str, int]:
        """Delete raw history older than the retention period: each pipeline once a day, a slice at a time."""
        self._last_retention = time.monotonic()
        part = [pid for key, pid in sorted(self._ids.items(), key=lambda kv: kv[1])
                if self._swept_until.get(pid, -1e18) <= now and self._owns(key)][:RETENTION_SLICE]
        for pid in part:
            self._swept_until[pid] = now + RETENTION_EVERY
        deleted = maintenance.apply_retention(conn, now - self.judge.settings.retention, part)
        if any(deleted.values()):
            log.info("retention: deleted %s", deleted)
        return deleted

    def _roll(self, pid: int, run: Run) -> None:
        end = run.ended_at or run.started_at
        ok = run.status is RunStatus.SUCCEEDED
        d = run.duration or 0.0
        for period, size in (("h", HOUR), ("d", DAY)):
            key = (pid, period, end // size * size)
            acc = self._rollups.get(key)
            if acc is None:
                acc = self._rollups[key] = [0, 0, 0, 0.0, 0.0, 0.0, 0.0]
            acc[0] += 1
            acc[1 if ok else 2] += 1
            acc[3] += d
            acc[4] = max(acc[4], d)
            acc[5] += run.rows or 0.0
            acc[6] += run.bytes or 0.0


def _schemas_by_run(events: list[Event]) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    for ev in events:
        if ev.schemas and ev.parent is None:
            out.setdefault((ev.pipeline, ev.run_id), {}).update(ev.schemas)
    return out


def _event_schedules(events: list[Event]) -> dict[str, tuple[str, str]]:
    """The schedule each pipeline's producer sent (Airflow's timetable; a task's event speaks for its DAG)."""
    out: dict[str, tuple[str, str]] = {}
    for ev in events:
        if ev.schedule:
            top = ev.root or ev.parent
            key = top.namespace + "/" + top.name if top else ev.pipeline
            out[key] = (ev.schedule, ev.schedule_tz or "UTC")
    return out


def _team_of(worker: Writer):
    """A pipeline's owning team, as the writer knows it now."""
    def team_of(pipeline: str) -> str | None:
        rec = worker.pipelines.get(pipeline)
        return rec.team if rec is not None else None
    return team_of

