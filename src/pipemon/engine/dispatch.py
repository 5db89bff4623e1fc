"""From alerts to notifications: routing, aggregation groups and their timers, deduplication, escalation,
acknowledgements. Pure: decides what to send and when; the outbox sends.

Groups follow Alertmanager: an alert joins the group of each route that takes it (keyed by the route and
its `group_by` labels); a new group is flushed after `group_wait`, then every `group_interval`. A flush
sends a `trigger` when the group holds firing alerts not yet sent, a `repeat` when `repeat_interval` has
passed since the last one (for conditions still going on: failure, late, running long, a failure burst;
an anomalous run, a missed SLA or a notice is said once), and a `resolve` for alerts that were sent and
have resolved. Two fixes over
Alertmanager: an alert that was sent stays on the group's sent list while silenced or inhibited, so its
resolve is always delivered (prometheus/alertmanager#226); and an alert that resolves before its group is
first flushed (a failure its retry fixed within group_wait) is dropped without a word.

Escalation: a route's policy pages its steps' receivers `after` the first trigger while the alert stays
unacknowledged (and repeats the steps `repeat` times); acknowledging stops it.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipemon.config import EscalationPolicy, Settings
from pipemon.engine.alerts import Alert
from pipemon.engine.mute import Muter
from pipemon.engine.route import RouteNode, compile_routes, routes_for
from pipemon.model import AlertState, NotifyAction, Severity

GROUP = "group"
ESCALATION = "escalation"
ONGOING = frozenset({"failure", "late", "running_long", "failure_rate", "receiver_failing"})


@dataclass(frozen=True)
class Outgoing:
    receiver: str
    action: NotifyAction
    group_key: str
    group_labels: dict[str, str]
    fingerprints: tuple[str, ...]
    time: float


@dataclass
class Group:
    key: str
    route_id: str
    receiver: str
    labels: dict[str, str]
    fps: set[str] = field(default_factory=set)
    next_flush: float | None = None
    last_flush: float | None = None
    last_sent: float | None = None
    sent: set[str] = field(default_factory=set)   # sent as firing and not yet resolved

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "fps": sorted(self.fps), "sent": sorted(self.sent)}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Group:
        return Group(**{**d, "fps": set(d["fps"]), "sent": set(d["sent"])})


@dataclass
class Escalation:
    fingerprint: str
    policy: str
    started: float
    step: int = 0
    round: int = 0
    next_at: float = 0.0


class Dispatch:
    def __init__(self, settings: Settings, muter: Muter) -> None:
        self.settings = settings
        self.muter = muter
        self.root = compile_routes(settings.route, settings.team_routes())
        self.nodes = _index(self.root)
        self.policies: dict[str, EscalationPolicy] = {p.name: p for p in settings.escalation_policies}
        self.groups: dict[str, Group] = {}
        self.escalations: dict[str, Escalation] = {}
        self.placed: dict[str, set[str]] = {}    # alert fingerprint -> group keys
        # pipeline -> its schedule's interval in seconds, if known (repeats follow it: RouteNode.repeat_after)
        self.cadence: Callable[[str], float | None] = lambda pipeline: None
        self.version = 0                         # bumped on every change: the caller persists when it moves
        # The alerts whose groups, timers or escalation moved since the caller took them (`take_touched`),
        # so that it stores only their partitions' pieces; None: any may have moved (store every piece).
        self.touched: set[str] | None = None

    def reconfigured(self, settings: Settings, muter: Muter) -> Dispatch:
        """The same groups, timers and escalations under new settings (a config reload). New alerts take the
        new routes; a group whose route is gone keeps its old node (timers, receiver) until its alerts
        resolve, and an escalation whose policy is gone finishes on it: nothing pending is dropped."""
        new = Dispatch(settings, muter)
        new.nodes = {**self.nodes, **new.nodes}
        new.policies = {**self.policies, **new.policies}
        new.groups, new.escalations, new.placed = self.groups, self.escalations, self.placed
        new.version = self.version + 1  # (new.touched is None: every piece is stored again)
        return new

    # --- placing alerts -----------------------------------------------------------------------------------
    def place(self, a: Alert, now: float, nodes: list[RouteNode] | None = None) -> None:
        """Put an alert into the groups of the routes that take it (once; labels are fixed at opening)."""
        if a.fingerprint in self.placed:
            return
        keys = set()
        for node in nodes if nodes is not None else routes_for(self.root, a.labels):
            if node.receiver is None:
                continue
            glabels = node.group_labels(a.labels)
            key = f"{node.id}:{node.receiver}:{json.dumps(glabels, sort_keys=True, separators=(',', ':'))}"
            g = self.groups.get(key)
            if g is None:
                g = self.groups[key] = Group(key, node.id, node.receiver, glabels,
                                             next_flush=now + node.group_wait)
            g.fps.add(a.fingerprint)
            keys.add(key)
        self.placed[a.fingerprint] = keys
        self._moved(a.fingerprint)

    def _moved(self, *fps: str) -> None:
        self.version += 1
        if self.touched is not None:
            self.touched.update(fps)

    def take_touched(self) -> set[str] | None:
        """The alerts whose state here moved since the last call (None: any may have), and start afresh."""
        out, self.touched = self.touched, set()
        return out

    def node(self, g: Group) -> RouteNode:
        return self.nodes[g.route_id]

    # --- the clock -----------------------------------------------------------------------------------------
    def due(self, now: float) -> bool:
        return any(g.next_flush is not None and g.next_flush <= now for g in self.groups.values()) or \
            any(e.next_at <= now for e in self.escalations.values())

    def flush(self, now: float, lookup: Callable[[str], Alert | None],
              open_alerts: Callable[[], list[Alert]]) -> list[Outgoing]:
        out: list[Outgoing] = []
        firing_labels: list[tuple[str, dict[str, str]]] | None = None
        for g in [g for g in self.groups.values() if g.next_flush is not None and g.next_flush <= now]:
            if firing_labels is None and self.muter.inhibit:  # every open alert is a potential source, once
                firing_labels = [(a.fingerprint, a.labels) for a in open_alerts()]
            out += self._flush_group(g, now, lookup, firing_labels)
        out += self._escalate(now, lookup, firing_labels)
        return out

    def quiet(self, a: Alert, now: float, firing_labels) -> str | None:
        why = a.held(now) or self.muter.quiet_reason(a.labels, now)
        if why is None and firing_labels is not None:
            src = self.muter.inhibited_by(a.fingerprint, a.labels, firing_labels)
            if src is not None:
                why = f"inhibited by {src}"
        return why

    def _flush_group(self, g: Group, now: float, lookup, firing_labels) -> list[Outgoing]:
        self._moved(*g.fps, *g.sent)  # the group's timers move: in the pieces of all its alerts
        node = self.node(g)
        alerts = {fp: lookup(fp) for fp in g.fps}
        firing, resolved = set(), set()
        for fp, a in alerts.items():
            if a is None:
                continue
            if a.open:
                if a.below_page_after(node.page_after_failures):
                    continue
                if self.quiet(a, now, firing_labels) is None:
                    firing.add(fp)
            elif fp in g.sent:
                resolved.add(fp)
        out: list[Outgoing] = []
        new = firing - g.sent
        # What is still going on (a failing pipeline, a late run, a run still running) is repeated; what
        # happened once (an anomalous run, a missed SLA, a notice) was said once
        ongoing = [a for fp in firing if (a := alerts[fp]) is not None and a.kind in ONGOING
                   and a.severity is not Severity.INFO]
        repeat = (g.last_sent is not None and bool(ongoing)
                  and now - g.last_sent >= node.repeat_after(self._cadence(ongoing)))
        if firing and (new or repeat):
            action = NotifyAction.TRIGGER if new else NotifyAction.REPEAT
            out.append(Outgoing(g.receiver, action, g.key, g.labels, tuple(sorted(firing)), now))
            g.last_sent = now
            for fp in firing:
                a = alerts[fp]
                assert a is not None
                a.notified.setdefault(g.receiver, GROUP)
                if fp in new and node.escalation and fp not in self.escalations:
                    policy = self.policies[node.escalation]
                    self.escalations[fp] = Escalation(fp, policy.name, now,
                                                      next_at=now + policy.steps[0].after)
        if resolved:
            out.append(Outgoing(g.receiver, NotifyAction.RESOLVE, g.key, g.labels, tuple(sorted(resolved)),
                                now))
        # sent alerts stay "sent" while open, even when muted now: their resolve must go out
        g.sent = firing | {fp for fp in g.sent if (a := alerts.get(fp)) is not None and a.open}
        for fp, a in alerts.items():
            if a is None or not a.open:
                g.fps.discard(fp)
                keys = self.placed.get(fp)
                if keys is not None:
                    keys.discard(g.key)
                    if not keys:
                        del self.placed[fp]
        g.last_flush = now
        if g.fps:
            g.next_flush = now + node.group_interval
        else:
            del self.groups[g.key]
        return out

    def _cadence(self, alerts: list[Alert]) -> float | None:
        """The shortest schedule interval among these alerts' pipelines; None when any has none known (a
        pipeline of unknown cadence keeps the plain repeat_interval)."""
        known = [self.cadence(a.pipeline) for a in alerts]
        return None if not known or any(c is None for c in known) else min(c for c in known if c is not None)

    def _escalate(self, now: float, lookup, firing_labels) -> list[Outgoing]:
        out = []
        for fp, e in list(self.escalations.items()):
            if e.next_at > now:
                continue
            a = lookup(fp)
            if a is None or a.state is not AlertState.FIRING:  # resolved or acknowledged: stop
                del self.escalations[fp]
                self._moved(fp)
                continue
            policy = self.policies.get(e.policy)
            if policy is None:
                del self.escalations[fp]
                self._moved(fp)
                continue
            if self.quiet(a, now, firing_labels) is None:
                step = policy.steps[e.step]
                out.append(Outgoing(step.receiver, NotifyAction.ESCALATE,
                                    f"escalation:{fp}:{e.round}.{e.step}",
                                    {"pipeline": a.pipeline, "kind": a.kind}, (fp,), now))
                a.notified[step.receiver] = ESCALATION if a.notified.get(step.receiver) != GROUP else GROUP
            e.step += 1
            self._moved(fp)
            if e.step >= len(policy.steps):
                if e.round >= policy.repeat:
                    del self.escalations[fp]
                    continue
                e.round += 1
                e.step = 0
            cycle = policy.steps[-1].after
            e.next_at = e.started + e.round * cycle + policy.steps[e.step].after
        return out

    # --- changes outside the timers -------------------------------------------------------------------------
    def on_resolved(self, a: Alert, now: float) -> list[Outgoing]:
        """Receivers paged only by escalation get their resolve at once (groups send theirs on flush)."""
        if self.escalations.pop(a.fingerprint, None) is not None:
            self._moved(a.fingerprint)
        return [Outgoing(r, NotifyAction.RESOLVE, f"escalation:{a.fingerprint}", {"pipeline": a.pipeline,
                                                                                   "kind": a.kind},
                         (a.fingerprint,), now)
                for r, how in sorted(a.notified.items()) if how == ESCALATION]

    def on_acknowledged(self, a: Alert, now: float) -> list[Outgoing]:
        """Acknowledging stops escalation and tells every receiver that was paged (PagerDuty closes the
        incident's noise; chat gets a line)."""
        if self.escalations.pop(a.fingerprint, None) is not None:
            self._moved(a.fingerprint)
        return [Outgoing(r, NotifyAction.ACKNOWLEDGE, f"ack:{a.fingerprint}",
                         {"pipeline": a.pipeline, "kind": a.kind}, (a.fingerprint,), now)
                for r in sorted(a.notified)]

    # --- persistence ----------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"groups": [g.to_json() for g in self.groups.values()],
                "escalations": [e.__dict__ for e in self.escalations.values()],
                "placed": {fp: sorted(k) for fp, k in self.placed.items()}}

    def load_json(self, d: dict[str, Any]) -> None:
        self.groups = {g["key"]: Group.from_json(g) for g in d.get("groups", [])
                       if g["route_id"] in self.nodes}
        self.escalations = {e["fingerprint"]: Escalation(**e) for e in d.get("escalations", [])
                            if e["policy"] in self.policies}
        self.placed = {fp: set(k) & set(self.groups) for fp, k in d.get("placed", {}).items()}
        self.touched = None  # what is stored may be cut otherwise (merged pieces): store every piece anew

    def pieces(self, part_of: Callable[[str], int | None], wanted: set[int] | None = None
               ) -> dict[int, dict[str, Any]]:
        """`split_state(self.to_json(), part_of)` for the `wanted` partitions only (None: all), straight from
        the state: copies, never the live groups' or escalations' dicts (a stored piece kept for comparison
        must not move with them)."""
        out: dict[int, dict[str, Any]] = {}

        def part(n: int) -> dict[str, Any]:
            return out.setdefault(n, {"groups": [], "escalations": [], "placed": {}})
        for g in self.groups.values():
            by: dict[int, list[str]] = {}
            for fp in sorted(g.fps):
                n = part_of(fp)
                if n is not None and (wanted is None or n in wanted):
                    by.setdefault(n, []).append(fp)
            if by:
                sent = sorted(g.sent)
                for n, fps in by.items():
                    part(n)["groups"].append({**g.__dict__, "fps": fps,
                                              "sent": [fp for fp in sent if fp in fps]})
        for fp, e in self.escalations.items():
            n = part_of(fp)
            if n is not None and (wanted is None or n in wanted):
                part(n)["escalations"].append(dict(e.__dict__))
        for fp, keys in self.placed.items():
            n = part_of(fp)
            if n is not None and (wanted is None or n in wanted):
                part(n)["placed"][fp] = sorted(keys)
        return out


def _index(node: RouteNode) -> dict[str, RouteNode]:
    out = {node.id: node}
    for c in node.children:
        out.update(_index(c))
    return out


# --- several writers (cluster/partitions.py): the state kept per partition of the event log ---------------
def split_state(d: dict[str, Any], part_of: Callable[[str], int | None]) -> dict[int, dict[str, Any]]:
    """Dispatch.to_json() cut by the partition of each alert (`part_of(fingerprint)`; None: dropped).
    A group spanning partitions goes to each with its own alerts and the group's timers; `merge_states`
    puts the pieces of the partitions one writer owns back together."""
    out: dict[int, dict[str, Any]] = {}

    def part(n: int) -> dict[str, Any]:
        return out.setdefault(n, {"groups": [], "escalations": [], "placed": {}})
    for g in d.get("groups", []):
        by: dict[int, list[str]] = {}
        for fp in g["fps"]:
            n = part_of(fp)
            if n is not None:
                by.setdefault(n, []).append(fp)
        for n, fps in by.items():
            part(n)["groups"].append({**g, "fps": fps, "sent": [fp for fp in g["sent"] if fp in fps]})
    for e in d.get("escalations", []):
        n = part_of(e["fingerprint"])
        if n is not None:
            part(n)["escalations"].append(e)
    for fp, keys in d.get("placed", {}).items():
        n = part_of(fp)
        if n is not None:
            part(n)["placed"][fp] = keys
    return out


def merge_states(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """The pieces of several partitions as one Dispatch.to_json(): a group present in several is one group,
    its alerts united, flushed at the earliest of their next flushes."""
    groups: dict[str, dict[str, Any]] = {}
    escalations: dict[str, dict[str, Any]] = {}
    placed: dict[str, list[str]] = {}
    for d in pieces:
        for g in d.get("groups", []):
            have = groups.get(g["key"])
            if have is None:
                groups[g["key"]] = {**g, "fps": list(g["fps"]), "sent": list(g["sent"])}
                continue
            have["fps"] = sorted(set(have["fps"]) | set(g["fps"]))
            have["sent"] = sorted(set(have["sent"]) | set(g["sent"]))
            nexts = [t for t in (have["next_flush"], g["next_flush"]) if t is not None]
            have["next_flush"] = min(nexts) if nexts else None
            for k in ("last_flush", "last_sent"):
                got = [t for t in (have[k], g[k]) if t is not None]
                have[k] = max(got) if got else None
        for e in d.get("escalations", []):
            escalations[e["fingerprint"]] = e
        placed.update(d.get("placed", {}))
    return {"groups": list(groups.values()), "escalations": list(escalations.values()), "placed": placed}
