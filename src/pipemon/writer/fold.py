"""The fold: events into pipelines, runs and lineage, in the writer's transaction (the writer's first stage).

Each event lands in its run (engine/runs.py folds it, tolerating any order); a task's event lands in its
root pipeline's run tree, and a parent run's status rolls up from its tasks. The fold keeps the writer's
caches (pipelines, recently used runs, lineage edges) and returns what changed, for the stages after it.
"""
from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from pipemon.access import UNOWNED, Caller
from pipemon.clock import Clock
from pipemon.config import Settings
from pipemon.engine import runs as runfold
from pipemon.log import partition_of
from pipemon.model import Event, EventType, Run, RunStatus, pipeline_key
from pipemon.ownership import owner
from pipemon.store import audit
from pipemon.store import writes
from pipemon.store.bodies import BodyCodec

TOUCH_FLUSH_S = 5.0  # on the ingest path; the clock tick (every second) flushes whatever is left
RUN_SIZE = 400  # bytes a cached Run costs beyond its strings: the struct, its key tuple, the dict entry


@dataclass
class PipelineRec:
    id: int
    key: str
    namespace: str
    name: str
    team: str | None
    event_team: str | None
    integration: str | None
    first_seen: float
    last_event_at: float
    open_runs: list[str] = field(default_factory=list)  # top-level runs still running, oldest first



@dataclass(frozen=True)
class RunChange:
    """A run as it was before this batch (None when new) and after."""

    pipeline: PipelineRec
    before: Run | None
    after: Run



class Fold:
    """The fold's state and steps; `Writer` (writer.py) is a Fold and calls `_fold` inside each group's
    transaction."""

    settings: Settings
    clock: Clock
    pipelines: dict[str, PipelineRec]
    by_id: dict[int, PipelineRec]
    bodies: BodyCodec
    _runs: OrderedDict[tuple[int, str], Run]
    _runs_bytes: int
    _lineage: set[tuple[int, str, str]]
    _touched: dict[int, PipelineRec]
    _touched_flushed: float
    # Cluster with several active workers (cluster/partitions.py): the log partitions this writer owns;
    # its engine state, clock and alerts cover their pipelines only. None: every pipeline (one writer).
    partitions: frozenset[int] | None = None
    # What the current transaction's fold wrote, so that the stages after it read the runs from here instead
    # of asking the store for what was just written (`folded_run`, `folded_tasks`); cleared by `_forget`.
    _folded: dict[tuple[int, str], Run]
    _created: frozenset[int]  # pipelines this transaction created: the store held none of their runs before

    def owns(self, pipeline: str) -> bool:
        """Whether this writer evaluates the pipeline (its partition is owned; see log.partition_of)."""
        return self.partitions is None or partition_of(pipeline) in self.partitions

    def _declare(self, conn: Connection) -> None:
        """Pipelines the config names exactly exist before their first event, so a pipeline that never
        ran can still be late."""
        now = self.clock.now()
        for rule in self.settings.pipelines:
            key = rule.match
            if any(c in key for c in "*?[") or key in self.pipelines or "/" not in key or not self.owns(key):
                continue  # (another partition's owner declares it: two inserts would collide)
            ns, _, name = key.rpartition("/")
            team = owner(*self.settings.config_owner(key), None)
            row = {"key": key, "namespace": ns, "name": name, "team": team, "event_team": None,
                   "integration": None, "first_seen": now, "last_event_at": now}
            pid = writes.insert_pipeline(conn, row)
            rec = PipelineRec(pid, key, ns, name, team, None, None, now, now)
            self.pipelines[key] = rec
            self.by_id[rec.id] = rec

    def _apply_owners(self, conn: Connection) -> list[PipelineRec]:
        """Every pipeline's owner by the one rule (ownership.owner), after a start or a config reload; the
        pipelines whose owner changed are written and returned."""
        changed = []
        for rec in self.pipelines.values():
            team = owner(*self.settings.config_owner(rec.key), rec.event_team)
            if team != rec.team:
                rec.team = team
                changed.append(rec)
        if changed:
            writes.update_pipelines(conn, [(r.team, r.event_team, r.integration, r.last_event_at, r.id)
                                           for r in changed])
        return changed

    def reconfigure(self, conn: Connection, settings: Settings) -> list[PipelineRec]:
        """New settings, on the writer thread between batches (a config reload): pipelines the new config
        names exactly are declared, and every owner follows the new config. Returns the owners changed."""
        self.settings = settings
        self._declare(conn)
        return self._apply_owners(conn)

    def lineage_edges(self) -> list[tuple[int, str, str]]:
        return list(self._lineage)


    def _cache_put(self, k: tuple[int, str], run: Run) -> None:
        """Keep a run, least recently used out first, within settings.cache.runs bytes (estimated)."""
        old = self._runs.get(k)
        if old is not None:
            self._runs_bytes -= run_size(old)
        self._runs[k] = run
        self._runs.move_to_end(k)
        self._runs_bytes += run_size(run)
        limit = self.settings.cache.runs
        while self._runs_bytes > limit and self._runs:
            _, gone = self._runs.popitem(last=False)
            self._runs_bytes -= run_size(gone)

    def _flush_touched(self, conn: Connection) -> None:
        """Write the pipelines whose last_event_at (or team, integration) moved since the last flush."""
        if self._touched:
            writes.update_pipelines(conn, [(r.team, r.event_team, r.integration, r.last_event_at, r.id)
                                           for r in self._touched.values()])
            self._touched.clear()
        self._touched_flushed = time.monotonic()


    def _pipeline(self, conn: Connection, ev: Event, key: str, namespace: str, name: str,
                  claims: dict[str, Caller], dirty: dict[int, PipelineRec], created: set[int],
                  own_team: bool = True) -> PipelineRec:
        rec = self.pipelines.get(key)
        claim = claims.get(key)
        if rec is not None and rec.team in (None, UNOWNED) and claim is not None:  # adopted by a token
            rec.event_team = rec.event_team or claim.team  # the producer's team: its token's, if unnamed
            rec.team = owner(*self.settings.config_owner(key), rec.event_team)
            dirty[rec.id] = rec
            audit.record(conn, actor=claim, action="pipeline.adopt", target=key, team=claim.team,
                         now=self.clock.now())
        if rec is None:
            # the creating token's team stands as the producer's team until an event names one, so a
            # reload re-derives the same owner (ownership.owner ranks it below the config and events).
            # The row holds at once what `_touch` would set from this event: one INSERT, no UPDATE after.
            token_team = claim.team if claim is not None else None
            event_team = (ev.team if own_team else ev.root_team) or token_team
            integration = ev.integration if own_team and ev.integration else None
            team = owner(*self.settings.config_owner(key), event_team)
            row = {"key": key, "namespace": namespace, "name": name, "team": team, "event_team": event_team,
                   "integration": integration, "first_seen": ev.time, "last_event_at": ev.time}
            rec = PipelineRec(writes.insert_pipeline(conn, row), key, namespace, name, team, event_team,
                              integration, ev.time, ev.time)
            self.pipelines[key] = rec
            self.by_id[rec.id] = rec
            created.add(rec.id)
        return rec

    def _fold(self, conn: Connection, fresh: list[Event], now: float,
              claims: dict[str, Caller] | None = None) -> list[RunChange]:
        """Fold `fresh` (new, deduplicated events) into pipelines, runs and lineage, and store them; returns
        each run as it was before and after. The runs are cached by `_remember`, after the later stages."""
        claims = claims or {}
        dirty: dict[int, PipelineRec] = {}
        created: set[int] = set()  # pipelines inserted here: the store holds none of their runs yet
        event_rows = []
        lineage_rows: list[dict] = []
        before: dict[tuple[int, str], Run | None] = {}
        work: dict[tuple[int, str], Run] = {}
        recs: dict[tuple[int, str], PipelineRec] = {}
        parents_to_roll: set[tuple[int, str]] = set()

        # Where does each event land? (pipeline, run) — a task lands in its root pipeline's run tree.
        parent_ids = sorted({ev.parent.run_id for ev in fresh if ev.parent is not None})
        known_parents = writes.find_task_parents(conn, parent_ids) if parent_ids else {}
        targets: list[tuple[PipelineRec, str, str | None, str | None]] = []
        for ev in fresh:
            if ev.parent is None:
                rec = self._pipeline(conn, ev, ev.pipeline, ev.namespace, ev.name, claims, dirty, created)
                self._touch(rec, ev, dirty)
                targets.append((rec, ev.run_id, None, None))
                continue
            p = ev.parent
            known = known_parents.get(p.run_id)
            if known is not None:
                rec = self.by_id[known[0]]  # the parent run exists: its tree, whatever the root says
            else:
                top = ev.root or p
                rec = self._pipeline(conn, ev, pipeline_key(top.namespace, top.name), top.namespace, top.name,
                                     claims, dirty, created, own_team=False)
                known_parents[p.run_id] = (rec.id, None if top.run_id == p.run_id else top.run_id)
            self._touch(rec, ev, dirty, own_team=False)
            targets.append((rec, ev.run_id, p.run_id, ev.pipeline))

        wanted = set()
        for rec, run_id, parent_id, _job in targets:
            if run_id:
                wanted.add((rec.id, run_id))
            if parent_id is not None:
                wanted.add((rec.id, parent_id))
                grand = known_parents[parent_id][1]
                if grand is not None:
                    wanted.add((rec.id, grand))
        missing = [k for k in wanted if k not in self._runs and k[0] not in created]
        if missing:
            for k, row in writes.load_runs(conn, missing).items():
                self._cache_put(k, writes.run_from_row(self.by_id[k[0]].key, row))

        def ensure_placeholder(rec: PipelineRec, run_id: str, at: float, parent: str | None, job: str | None):
            k = (rec.id, run_id)
            if k not in work and k not in self._runs:
                work[k] = runfold.placeholder(rec.key, run_id, at, parent, job)
                before[k] = None
                recs[k] = rec
            parents_to_roll.add(k)

        for ev, (rec, run_id, parent_id, job) in zip(fresh, targets):
            event_rows.append((ev.key, rec.id, ev.run_id, ev.type.value, ev.source.value, ev.time, now,
                               self.bodies.encode(ev.raw)))
            for ds in ev.inputs:
                self._edge(rec.id, ds, "in", now, lineage_rows)
            for ds in ev.outputs:
                self._edge(rec.id, ds, "out", now, lineage_rows)
            if not run_id:
                if ev.type is EventType.HEARTBEAT:
                    continue  # a pipeline-level event (OpenLineage JobEvent, heartbeat ping)
                run_id = rec.open_runs[-1] if rec.open_runs else str(uuid.uuid4())
            if parent_id is not None:
                assert ev.parent is not None
                grand = known_parents[parent_id][1]
                if grand is not None:  # nested: the parent is a task of the root run
                    ensure_placeholder(rec, grand, ev.time, None, None)
                ensure_placeholder(rec, parent_id, ev.time, grand,
                                   pipeline_key(ev.parent.namespace, ev.parent.name) if grand else None)
            k = (rec.id, run_id)
            cur = work.get(k) or self._runs.get(k)
            if k not in before:
                before[k] = cur
            new = runfold.apply(cur, ev, rec.key, run_id, parent_id, job)
            work[k] = new
            recs[k] = rec
            if new.parent_run_id is None:
                self._track_open(rec, run_id, new)
                if new.status in (RunStatus.FAILED, RunStatus.ABORTED):
                    parents_to_roll.add(k)  # what broke comes from its tasks, whichever came first

        children: dict[tuple[int, str], list[Run]] = {}
        if parents_to_roll:
            for k2, r2 in work.items():
                if r2.parent_run_id is not None:
                    children.setdefault((k2[0], r2.parent_run_id), []).append(r2)
        for pk in sorted(parents_to_roll):
            parent = work.get(pk) or self._runs.get(pk)
            if parent is None:
                continue
            rec = recs.setdefault(pk, self.by_id[pk[0]])
            tasks = {} if pk[0] in created else \
                {r.run_id: writes.run_from_row(rec.key, r) for r in writes.load_tasks(conn, pk[0], pk[1])}
            for r2 in children.get(pk, ()):
                tasks[r2.run_id] = r2
            rolled = runfold.rollup(parent, tasks.values())
            if rolled == parent and pk not in work:
                continue
            if pk not in before:
                before[pk] = parent
            work[pk] = rolled
            if rolled.parent_run_id is None:
                self._track_open(rec, pk[1], rolled)

        inserts: list[tuple[int, Run]] = []
        updates: list[tuple[int, Run]] = []
        for k, run in work.items():
            (updates if before.get(k) is not None else inserts).append((k[0], run))
        writes.insert_events(conn, event_rows)
        self.bodies.maybe_train(conn, now)
        writes.insert_runs(conn, inserts)
        writes.update_runs(conn, updates)
        writes.insert_lineage(conn, lineage_rows)
        if dirty or time.monotonic() - self._touched_flushed >= TOUCH_FLUSH_S:
            # last_event_at alone is flushed every few seconds, not per transaction: it only informs reads
            self._touched.update(dirty)
            self._flush_touched(conn)
        self._folded, self._created = work, frozenset(created)
        return [RunChange(recs[k], before.get(k), run) for k, run in work.items()]

    def _remember(self, changes: list[RunChange]) -> None:
        """Cache the folded runs, once the stages after the fold took them without error."""
        for ch in changes:
            self._cache_put((ch.pipeline.id, ch.after.run_id), ch.after)

    def _forget(self) -> None:
        """The transaction ended (committed or rolled back): what its fold wrote is no longer news."""
        self._folded, self._created = {}, frozenset()

    # --- for the stages after the fold, in the same transaction --------------------------------------------
    def folded_run(self, conn: Connection, pid: int, run_id: str) -> Run | None:
        """The run as stored now: as this transaction's fold wrote it, else read from the store."""
        run = self._folded.get((pid, run_id))
        if run is not None:
            return run
        row = writes.load_runs(conn, [(pid, run_id)]).get((pid, run_id))
        return None if row is None else writes.run_from_row(self.by_id[pid].key, row)

    def folded_tasks(self, conn: Connection, pid: int, run_id: str) -> list[Run]:
        """The run's task runs as stored now. A pipeline this transaction created has only the tasks its fold
        wrote; any other is read from the store."""
        if pid in self._created:
            return [r for (p, _), r in self._folded.items() if p == pid and r.parent_run_id == run_id]
        return [writes.run_from_row(self.by_id[pid].key, r) for r in writes.load_tasks(conn, pid, run_id)]

    def _touch(self, rec: PipelineRec, ev: Event, dirty: dict[int, PipelineRec],
               own_team: bool = True) -> None:
        changed = False
        if ev.time > rec.last_event_at:
            rec.last_event_at = ev.time
            self._touched[rec.id] = rec
        team = ev.team if own_team else ev.root_team  # a task's event names its DAG's owner, when it does
        if team and team != rec.event_team:
            rec.event_team = team
            rec.team = owner(*self.settings.config_owner(rec.key), team)
            changed = True
        if own_team and ev.integration and ev.integration != rec.integration:
            rec.integration = ev.integration
            changed = True
        if changed:
            dirty[rec.id] = rec

    def _edge(self, pid: int, dataset: str, role: str, now: float, rows: list[dict]) -> None:
        k = (pid, dataset, role)
        if k not in self._lineage:
            self._lineage.add(k)
            rows.append({"pipeline_id": pid, "dataset": dataset, "role": role, "last_seen": now})

    @staticmethod
    def _track_open(rec: PipelineRec, run_id: str, run: Run) -> None:
        if run.status is RunStatus.RUNNING:
            if run_id not in rec.open_runs:
                rec.open_runs.append(run_id)
        elif run_id in rec.open_runs:
            rec.open_runs.remove(run_id)



def run_size(run: Run) -> int:
    """A cheap estimate of the memory a cached run holds: a fixed part plus its own strings and metrics
    (the pipeline key is shared with PipelineRec and not counted)."""
    n = RUN_SIZE + len(run.run_id)
    for t in (run.error_message, run.error_type, run.log_excerpt, run.parent_run_id, run.job):
        if t:
            n += 49 + len(t)
    if run.metrics:
        n += 64 + 100 * len(run.metrics)
    return n
