"""The alerts stage: runs the alerting engine (alerts, suppression, routing, grouping, escalation) inside
the writer's transaction on the signals of the health stage, and stores what it decided: alerts, and
notifications in the outbox.

The outbox row is written in the same transaction as the event that caused it, so a notification is
neither lost (the event is acknowledged only after commit) nor invented (a rolled-back event leaves
none). After commit the new notifications are handed to the deliverer directly (no polling delay); the
deliverer also polls the outbox for retries and for what a previous process left behind.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
from sqlalchemy.engine import Connection

from pipemon.access import UNOWNED
from pipemon.config import Settings
from pipemon.engine.alerts import ROOT_KINDS, Alert, AlertBook, PipelineInfo, fingerprint
from pipemon.engine.dispatch import Dispatch, Outgoing, merge_states
from pipemon.engine.judge import Outcome
from pipemon.engine.lineage import Lineage
from pipemon.engine.matchers import parse_all
from pipemon.engine.mute import Muter, Silence
from pipemon.engine.runs import failed_first, failure_output
from pipemon.log import PARTITIONS, partition_of
from pipemon.model import AlertKind, AlertState, Event, Notification, Severity
from pipemon.store import alerting as store

if TYPE_CHECKING:
    from pipemon.writer.health import HealthStage
    from pipemon.writer.writer import Writer

log = logging.getLogger(__name__)
PAUSE_CHECK_S = 30.0
SILENCE_SYNC_S = 2.0  # several writers: how often each reads the silences the others' nodes made
ROOTS_SYNC_S = 2.0    # and the others' open failure and late alerts (roots to attach to)
ROOT_KIND_NAMES = tuple(sorted(k.value for k in ROOT_KINDS))
RECEIVER_PIPELINE = "pipemon/receiver:{}"


class AlertStage:
    def __init__(self, settings: Settings, health: HealthStage) -> None:
        self.settings = settings
        self.health = health
        self.writer: Writer | None = None
        self.lineage = Lineage()
        self.muter = Muter(settings.maintenance_windows, settings.inhibit_rules)
        self.book = AlertBook(settings, health.judge, self.lineage, self.info)
        self.dispatch = Dispatch(settings, self.muter)
        self.dispatch.cadence = self._cadence
        self.resolved: dict[str, Alert] = {}       # resolved, still to be announced by a group flush
        self.by_id: dict[int, str] = {}            # open alert id -> fingerprint
        self.external_url = (settings.alerting.external_url or "").rstrip("/") or None
        self.on_notifications: list[Callable[[list[Notification]], None]] = []  # after commit
        self._created: list[Notification] = []
        self._last_pause_check = -1e18
        self._saved_version = 0
        self._saved_parts: dict[int, dict] = {}  # partition -> the dispatch piece last stored for it
        self._fp_parts: dict[str, int] = {}      # alert fingerprint -> its pipeline's partition (memo)
        self._silences_read = time.monotonic()
        self._roots_read = -1e18  # the first tick reads them

    # --- context -----------------------------------------------------------------------------------------
    def info(self, pipeline: str) -> PipelineInfo:
        rec = self.writer.pipelines.get(pipeline) if self.writer else None
        rule = self.settings.rule_for(pipeline)
        ns = rec.namespace if rec else pipeline.rpartition("/")[0]
        team = (rec.team if rec and rec.team else None) or (rule.team if rule and rule.team else None)
        if pipeline.startswith("pipemon/receiver:"):
            team = "pipemon"
        return PipelineInfo(team=team or UNOWNED, tier=rule.tier if rule else None,
                            tags=dict(rule.tags) if rule else {}, namespace=ns,
                            page_after_failures=rule.page_after_failures if rule else None)

    def url(self, pipeline: str) -> str | None:
        if not self.external_url:
            return None
        from urllib.parse import quote
        return f"{self.external_url}/pipelines/{quote(pipeline, safe='')}"

    def lookup(self, fp: str) -> Alert | None:
        return self.book.open.get(fp) or self.resolved.get(fp)

    # --- start-up ------------------------------------------------------------------------------------------
    def load(self, conn: Connection, writer: Writer, now: float) -> None:
        self.writer = writer
        self.lineage = Lineage()
        by_id = {rec.id: key for key, rec in writer.pipelines.items()}
        for pid, ds, role in writer.lineage_edges():
            if pid in by_id:
                self.lineage.add(by_id[pid], ds, role)
        for key in writer.pipelines:
            rule = self.settings.rule_for(key)
            if rule and rule.depends_on:
                self.lineage.declare(key, rule.depends_on)
        self.muter = Muter(self.settings.maintenance_windows, self.settings.inhibit_rules)
        for r in store.load_silences(conn, since=now):
            self.muter.silences[r.id] = _silence(r)
        self.book = AlertBook(self.settings, self.health.judge, self.lineage, self.info)
        self.book.enrich = self._enrich
        self.dispatch = Dispatch(self.settings, self.muter)
        self.dispatch.cadence = self._cadence
        self.by_id = {}
        for aid, body in store.load_open_alerts(conn):
            a = Alert.from_json(body)
            if not writer.owns(a.pipeline):
                continue  # another worker's partition: its writer keeps it
            a.id = aid
            self.book.open_alert(a.fingerprint, a)
            self.by_id[aid] = a.fingerprint
        blob = self._load_dispatch(conn, writer)
        if blob:
            self.dispatch.load_json(blob)
        self._saved_version = self.dispatch.version
        self._saved_parts = {}
        self._fp_parts = {}
        self.resolved = {}
        self._created = []
        self._conn: Connection | None = conn

    def reconfigure(self, conn: Connection, settings: Settings, now: float) -> None:
        """New routes, receivers, policies, windows and inhibit rules (a config reload, on the writer thread
        between batches). Open alerts, groups, timers, escalations and silences carry over (see
        Dispatch.reconfigured): nothing pending is dropped."""
        self.settings = settings
        self.external_url = (settings.alerting.external_url or "").rstrip("/") or None
        declared = self.lineage.declared()
        self.lineage.undeclare()
        for key in set(self.writer.pipelines if self.writer else ()) | set(declared):
            rule = settings.rule_for(key)
            if rule and rule.depends_on:
                self.lineage.declare(key, rule.depends_on)
        muter = Muter(settings.maintenance_windows, settings.inhibit_rules)
        muter.silences = self.muter.silences
        self.muter = muter
        self.book.settings = settings
        self.dispatch = self.dispatch.reconfigured(settings, muter)
        self._conn = conn
        self._last_pause_check = -1e18  # the next tick (within a second) judges `paused` by the new windows
        self._process(conn, now)        # and stores the dispatch state

    # --- the writer's stage (stages.py calls these in order) ------------------------------------------------
    def on_events(self, events: list[Event]) -> None:
        for ev in events:
            if not (ev.inputs or ev.outputs):
                continue
            top = ev.root or ev.parent
            key = f"{top.namespace}/{top.name}" if top is not None else ev.pipeline
            for ds in ev.inputs:
                self.lineage.add(key, ds, "in")
            for ds in ev.outputs:
                self.lineage.add(key, ds, "out")

    def on_outcome(self, conn: Connection, out: Outcome, now: float) -> None:
        """The signals the health stage raised: alerts open, change and resolve."""
        if not out.signals:
            return
        self._conn = conn
        for sig in out.signals:
            self.book.on_signal(sig, now)
        self._process(conn, now)

    def on_clock(self, conn: Connection, now: float, out: Outcome) -> None:
        """Alert timers and escalations; every PAUSE_CHECK_S, which pipelines are muted (into `out`)."""
        self._conn = conn
        self._sync_silences(conn, now)
        self._sync_foreign_roots(conn, now)
        self.book.tick(now)
        if now - self._last_pause_check >= PAUSE_CHECK_S:
            self._last_pause_check = now
            self.refresh_paused(now, out)
        self._process(conn, now)

    def _sync_silences(self, conn: Connection, now: float) -> None:
        """With several writers a silence is made (or expired) by whichever node took the request: the
        others read it from the store within SILENCE_SYNC_S, and judge `muted` again at once."""
        if self.writer is None or self.writer.partitions is None or \
                time.monotonic() - self._silences_read < SILENCE_SYNC_S:
            return
        self._silences_read = time.monotonic()
        stored = {r.id: _silence(r) for r in store.load_silences(conn, since=now)}
        if stored.keys() != {k for k, s in self.muter.silences.items() if s.ends_at > now} or \
                any(self.muter.silences.get(k) != s for k, s in stored.items()):
            self.muter.silences.clear()
            self.muter.silences.update(stored)
            self._last_pause_check = -1e18

    def _sync_foreign_roots(self, conn: Connection, now: float) -> None:
        """With several writers, a pipeline's upstream may be another's: every ROOTS_SYNC_S, the open
        failure and late alerts of pipelines this writer does not keep are read from the store, so that
        "one page per root cause" holds across partitions (attach to them; resolve what was attached to
        one when it is gone), and, with inhibition rules, every open alert of theirs, as possible sources.
        What opened elsewhere within that window is not seen yet."""
        w = self.writer
        if w is None or w.partitions is None or len(w.partitions) == PARTITIONS or \
                time.monotonic() - self._roots_read < ROOTS_SYNC_S:
            return
        self._roots_read = time.monotonic()
        foreign = {}
        # with inhibition rules, every open alert may be a source: all of them, else the roots only
        for _, body in store.load_open_alerts(conn, kinds=None if self.muter.inhibit else ROOT_KIND_NAMES):
            if not w.owns(body["pipeline"]):
                a = Alert.from_json(body)
                foreign[a.fingerprint] = a
        self.book.mirror_foreign(foreign, now)

    def _inhibitors(self) -> list[Alert]:
        """Open alerts that may inhibit others: this writer's own and those mirrored from the others."""
        return [*self.book.open.values(), *self.book.foreign.values()]

    def after_commit(self) -> None:
        created, self._created = self._created, []
        if created:
            for fn in self.on_notifications:
                fn(created)

    def refresh_paused(self, now: float, out: Outcome) -> None:
        """A pipeline that a silence or an active maintenance window covers is `muted` (its state stays)."""
        engine = self.health.judge
        if not self.muter.silences and not self.muter.windows:
            for key, h in engine.health.items():
                if h.muted:
                    engine.set_muted(key, None, None, now, out)
            return
        for key in list(engine.health):
            info = self.info(key)
            labels = {**info.tags, "team": info.team, "namespace": info.namespace, "pipeline": key,
                      "tier": str(info.tier) if info.tier else ""}
            why, until = self.muter.quiet(labels, now) or (None, None)
            engine.set_muted(key, why, until, now, out)

    # --- deciding and storing -----------------------------------------------------------------------------
    def _process(self, conn: Connection, now: float) -> None:
        outgoing: list[Outgoing] = []
        dirty: dict[str, Alert] = {}
        # Alerts opened here are stored once, after the flush below, as it left them (one INSERT, not an
        # INSERT then an UPDATE); in the order they opened, so one that resolved here is stored before a
        # new open alert with its fingerprint (the unique index on open fingerprints). No decision below
        # reads an alert's id.
        opened: list[Alert] = []
        a: Alert | None  # a change's alert below; an open alert looked up by fingerprint further down
        for ch in self.book.take_changes():
            a = ch.alert
            if ch.what == "opened":
                opened.append(a)
            elif ch.what == "resolved":
                if a.id is not None:  # stored before: resolved now, as a new alert with this fingerprint
                    store.update_alerts(conn, [a])  # may follow at once
                    self.by_id.pop(a.id, None)
                dirty.pop(a.fingerprint, None)
                if a.fingerprint in self.dispatch.placed:
                    self.resolved[a.fingerprint] = a
                outgoing += self.dispatch.on_resolved(a, now)
                continue
            else:
                dirty[a.fingerprint] = a
            if ch.what == "acknowledged":
                outgoing += self.dispatch.on_acknowledged(a, now)
            if a.open:
                if a.kind == AlertKind.RECEIVER_FAILING:
                    self._place_default(a, now)
                else:
                    self.dispatch.place(a, now)
        if self.dispatch.due(now):
            outgoing += self.dispatch.flush(now, self.lookup, self._inhibitors)
        for o in outgoing:
            for fp in o.fingerprints:
                a = self.book.open.get(fp)
                if a is not None and a.id is not None:
                    dirty[fp] = a
        for a in opened:
            a.id = store.insert_alert(conn, a)
            if a.open:
                self.by_id[a.id] = a.fingerprint
        inserted = {id(a) for a in opened}
        store.update_alerts(conn, [a for a in dirty.values() if a.id is not None and id(a) not in inserted])
        self._emit(conn, outgoing, now)
        if self.dispatch.version != self._saved_version:  # groups and timers, with the alerts they concern
            self._save_dispatch(conn, now)  # (before resolved alerts are let go: their partitions are known)
            self._saved_version = self.dispatch.version
        for fp in [fp for fp in self.resolved if fp not in self.dispatch.placed]:
            del self.resolved[fp]

    # Several writers (cluster/partitions.py): each stores the groups and timers of its partitions' alerts
    # in one blob per partition, so a partition's next owner loads exactly what concerns it.
    def _load_dispatch(self, conn: Connection, writer: Writer) -> dict | None:
        if writer.partitions is None:
            return store.get_blob(conn, "dispatch")
        pieces = [b for n in sorted(writer.partitions) if (b := store.get_blob(conn, f"dispatch:{n}"))]
        if not pieces and not any(store.get_blob(conn, f"dispatch:{n}") for n in range(PARTITIONS)):
            return store.get_blob(conn, "dispatch")  # the first start after one writer owned everything
        return merge_states(pieces)

    def _save_dispatch(self, conn: Connection, now: float) -> None:
        owned = self.writer.partitions if self.writer is not None else None
        if owned is None:
            store.put_blob(conn, "dispatch", self.dispatch.to_json(), now)
            return
        # Only the pieces of the partitions whose alerts moved are cut and compared: the cost follows what
        # changed, not every open group (a fleet's worth, cut and compared on each alert).
        touched = self.dispatch.take_touched()
        wanted = set(owned)
        if touched is not None:
            parts = [self._partition_of(fp) for fp in touched]
            known = {n for n in parts if n is not None}
            if len(known) == len(set(parts)):  # (an alert no longer known: any piece may hold it)
                wanted &= known
        pieces = self.dispatch.pieces(self._partition_of, wanted)
        for n in sorted(wanted):
            piece = pieces.get(n) or {"groups": [], "escalations": [], "placed": {}}
            if self._saved_parts.get(n) != piece:  # only the partitions whose groups or timers moved
                store.put_blob(conn, f"dispatch:{n}", piece, now)
                self._saved_parts[n] = piece

    def _partition_of(self, fp: str) -> int | None:
        """The log partition of an alert's pipeline (None: the alert is not known here)."""
        n = self._fp_parts.get(fp)
        if n is None:
            a = self.lookup(fp)
            if a is None:
                return None
            if len(self._fp_parts) > 2 * len(self.dispatch.placed) + 1000:  # let go of long-gone alerts
                self._fp_parts.clear()
            n = self._fp_parts[fp] = partition_of(a.pipeline)
        return n

    def _place_default(self, a: Alert, now: float) -> None:
        """pipemon's own trouble (a receiver that keeps failing) goes through the default route."""
        self.dispatch.place(a, now, [self.dispatch.root])

    def _emit(self, conn: Connection, outgoing: list[Outgoing], now: float) -> None:
        for o in outgoing:
            views = tuple(a.view(self.url(a.pipeline), o.time) for fp in o.fingerprints
                          if (a := self.lookup(fp)) is not None)
            if not views:
                continue
            key = hashlib.blake2b("\x1f".join([o.receiver, o.group_key, o.action.value, repr(o.time),
                                               *o.fingerprints]).encode(), digest_size=16).hexdigest()
            n = Notification(id=0, receiver=o.receiver, action=o.action, group_key=o.group_key,
                             group_labels=o.group_labels, alerts=views, time=o.time, key=key,
                             external_url=self.external_url)
            nid = store.insert_notification(conn, key=key, receiver=o.receiver, action=o.action.value,
                                            group_key=o.group_key, teams=sorted({v.team for v in views}),
                                            fingerprints=list(o.fingerprints),
                                            body=msgspec.json.encode(n).decode(), now=now)
            if nid is not None:
                self._created.append(msgspec.structs.replace(n, id=nid))

    def _cadence(self, pipeline: str) -> float | None:
        """The interval of the pipeline's schedule (declared, from its events, or learned), if known."""
        sched = self.health.judge.detect.schedule(pipeline)
        return sched.interval_s if sched is not None else None

    def _enrich(self, a: Alert) -> None:
        """A failure names its failing task and root error (the roll-up of the run's task runs, by the rule
        of engine.runs.failed_first), and carries what the failing task or run printed last: dbt's
        multi-line error, the end of a stack trace, a command's output (already bounded and redacted)."""
        if a.kind != AlertKind.FAILURE or a.run_id is None or self.writer is None or self._conn is None:
            return
        rec = self.writer.pipelines.get(a.pipeline)
        if rec is None:
            return
        # (the run and its tasks were just folded, mostly: the writer has them without asking the store)
        failed = failed_first(self.writer.folded_tasks(self._conn, rec.id, a.run_id))
        if failed:
            first = failed[0]
            a.failed_task = first.job
            a.error = first.error_message or a.error
            a.output = failure_output(first)
            return
        if a.error is None:
            h = self.health.judge.health.get(a.pipeline)
            a.error = h.last_error if h else None
        run = self.writer.folded_run(self._conn, rec.id, a.run_id)
        if run is not None:
            a.output = failure_output(run)

    # --- operators ------------------------------------------------------------------------------------------
    def _open_by_id(self, alert_id: int) -> Alert:
        fp = self.by_id.get(alert_id)
        if fp is None or fp not in self.book.open:
            from pipemon.errors import NotFound
            raise NotFound(f"no open alert {alert_id}")
        return self.book.open[fp]

    def _operable(self, conn: Connection, alert_id: int, scope: str | None) -> Alert:
        """An open alert the caller may change: another team's answers as a missing one (the store's query
        is scoped by the caller's team)."""
        row = store.get_alert(conn, alert_id, scope)
        if self.writer is not None and not self.writer.owns(row.pipeline):
            from pipemon.errors import Elsewhere
            p = partition_of(row.pipeline)
            raise Elsewhere(f"alert {alert_id} ({row.pipeline}) is kept by the worker owning partition {p}, "
                            "not this one", partition=p)
        return self._open_by_id(alert_id)

    def acknowledge(self, conn: Connection, alert_id: int, by: str, now: float,
                    scope: str | None = None) -> Alert:
        self._conn = conn
        a = self.book.acknowledge(self._operable(conn, alert_id, scope).fingerprint, by, now)
        self._process(conn, now)
        return a

    def resolve(self, conn: Connection, alert_id: int, by: str, now: float,
                scope: str | None = None) -> Alert:
        self._conn = conn
        a = self.book.resolve(self._operable(conn, alert_id, scope).fingerprint, by, now)
        self._process(conn, now)
        return a

    def add_silence(self, conn: Connection, matchers: list[str], starts_at: float, ends_at: float,
                    created_by: str, comment: str, now: float, team: str | None = None) -> Silence:
        """team: the creating caller's (`Caller.scope()`); the silence then mutes that team's alerts only."""
        parsed = parse_all(matchers)  # raises ValueError with a clear message
        sid = store.insert_silence(conn, [str(m) for m in parsed], starts_at, ends_at, created_by, comment,
                                   now, team)
        s = Silence(sid, parsed, starts_at, ends_at, created_by, comment, team)
        self.muter.silences[sid] = s
        self._refresh(conn, now)
        return s

    def expire_silence(self, conn: Connection, silence_id: int, now: float, scope: str | None = None):
        row = store.expire_silence(conn, silence_id, now, scope)
        self.muter.silences[silence_id] = _silence(row)
        self._refresh(conn, now)
        return row

    def _refresh(self, conn: Connection, now: float) -> None:
        out = Outcome()
        self.refresh_paused(now, out)
        self.health.write(conn, out, now)
        self.on_outcome(conn, out, now)

    def receiver_status(self, conn: Connection, receiver: str, failing: bool, error: str, now: float) -> None:
        """The deliverer reports a receiver that keeps failing, or that works again."""
        self._conn = conn
        pipeline = RECEIVER_PIPELINE.format(receiver)
        fp = fingerprint(pipeline, AlertKind.RECEIVER_FAILING)
        a = self.book.open.get(fp)
        if failing and a is None:
            a = Alert(fingerprint=fp, pipeline=pipeline, team="pipemon", kind=AlertKind.RECEIVER_FAILING,
                      labels={"team": "pipemon", "namespace": "pipemon", "pipeline": pipeline,
                              "kind": "receiver_failing", "severity": Severity.ERROR.value,
                              "receiver": receiver},
                      severity=Severity.ERROR, summary=f"notifications to receiver {receiver} keep failing",
                      description=f"the last deliveries to {receiver} failed: {error}", started_at=now,
                      last_seen=now, conditions={"delivery"})
            self.book.open[fp] = a
            self.book.changes.append(_change(a, "opened"))
        elif not failing and a is not None and a.state is not AlertState.RESOLVED:
            self.book.resolve(fp, "deliveries succeed again", now)
        self._process(conn, now)


def _change(a: Alert, what: str):
    from pipemon.engine.alerts import Change
    return Change(a, what)


def _silence(row) -> Silence:
    return Silence(row.id, parse_all(msgspec.json.decode(row.matchers)), row.starts_at, row.ends_at,
                   row.created_by, row.comment, row.team)

