"""The `pipemon.yaml` for the demo fleet: declares the critical pipelines, leaves the rest to learning.

Thresholds come from simulating two quiet weeks of the fleet (no incidents) and adding margin, so
a declared pipeline alerts on injected incidents, not on its normal variation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipemon.sim.catalog import Layer
from pipemon.sim.feed import DEFAULT_START
from pipemon.sim.fleet import Fleet, Pipeline
from pipemon.sim.incidents import NO_INCIDENTS
from pipemon.sim.runs import run_records
from pipemon.sim.schedule import DAY, MINUTE, SECOND, to_ms

_BASELINE_DAYS = 14

# Alerting that needs no outside service: every notification is printed in the terminal (the built-in
# `log` receiver) and kept like any delivery (GET /api/v1/notifications, the alerts page). Grouped by team,
# so one notification can carry several alerts; the timers are the defaults (README, "Repeats").
ALERTING = [
    "# Alerting: each notification is one line in this terminal, and kept for /alerts and",
    "# GET /api/v1/notifications. Replace `log: {}` with slack:, pagerduty:, webhook: or email:.",
    "receivers:",
    "  - name: terminal",
    "    log: {}",
    "route:",
    "  receiver: terminal",
    "  group_by: [team]",
]


@dataclass
class _Observed:
    max_delay_s: float = 0.0  # latest start after the scheduled time
    max_duration_s: float = 0.0
    max_finish_of_day_s: float = 0.0  # latest end, as seconds after the scheduled day's midnight


def demo_config(fleet: Fleet, *, declared: int = 16, path: str | Path | None = None,
                alerting: bool = True) -> str:
    """The YAML text (also written to `path` if given) declaring about `declared` pipelines; with
    `alerting`, receivers and a route to the terminal (`log`), else none (the caller adds its own)."""
    chosen = _choose(fleet, declared)
    observed = _observe(fleet, {p.id for p in chosen})
    lines = [
        f"# pipemon.yaml for the simulated demo fleet (seed {fleet.seed}, {len(fleet)} pipelines).",
        "# Declares the business-critical pipelines and two whole namespaces; the others are learned.",
        "pipelines:",
    ]
    for p in chosen:
        lines += _entry(fleet, p, observed[p.id])
    for namespace, team, tier in _team_namespaces(fleet, {p.id for p in chosen}):
        lines += [f"  - match: {json.dumps(namespace + '/*')}", f"    team: {team}", f"    tier: {tier}"]
    if alerting:
        lines += ALERTING
    text = "\n".join(lines) + "\n"
    if path is not None:
        Path(path).write_text(text)
    return text


def _choose(fleet: Fleet, declared: int) -> list[Pipeline]:
    """Tier-1 pipelines, a few frequent ones and the rest daily, taken from every layer in turn so
    that `depends_on` chains show up."""
    tier1 = [p for p in fleet.pipelines if p.tier == 1]
    frequent = [p for p in tier1 if not p.schedule.is_daily][:3]
    by_layer = [[p for p in tier1 if p.layer is layer and p.schedule.is_daily] for layer in Layer]
    daily: list[Pipeline] = []
    for rank in range(max(map(len, by_layer), default=0)):
        daily += [layer[rank] for layer in by_layer if rank < len(layer)]
    return sorted(frequent + daily[: max(0, declared - len(frequent))], key=lambda p: p.index)


def _observe(fleet: Fleet, ids: set[str]) -> dict[str, _Observed]:
    seen = {i: _Observed() for i in ids}
    for r in run_records(fleet, DEFAULT_START, DEFAULT_START + _BASELINE_DAYS * DAY / SECOND,
                         incidents=NO_INCIDENTS):
        o = seen.get(r.pipeline)
        if o is None:
            continue
        o.max_delay_s = max(o.max_delay_s, r.start - r.nominal_time)
        o.max_duration_s = max(o.max_duration_s, r.end - r.start)
        midnight = to_ms(r.nominal_time) // DAY * DAY / SECOND
        o.max_finish_of_day_s = max(o.max_finish_of_day_s, r.end - midnight)
    return seen


def _entry(fleet: Fleet, p: Pipeline, o: _Observed) -> list[str]:
    tags = ", ".join(f"{k}: {json.dumps(v)}" for k, v in p.tags if k != "pii")
    lines = [
        f"  - match: {json.dumps(p.id)}",
        f"    team: {p.team}",
        f"    tier: {p.tier}",
        f"    schedule: {json.dumps(p.schedule.cron)}",
        f"    grace: {_duration(max(5 * 60, 2 * o.max_delay_s))}",
        f"    max_duration: {_duration(max(5 * 60, 1.5 * o.max_duration_s))}",
    ]
    if p.schedule.is_daily:
        deadline_min = -(-(o.max_finish_of_day_s + 30 * 60) // (30 * 60)) * 30  # +30 min, up to the half hour
        if deadline_min < 24 * 60:
            lines.append(f'    sla: "{int(deadline_min) // 60:02d}:{int(deadline_min) % 60:02d}"')
    if p.upstream:
        lines.append(f"    depends_on: [{', '.join(json.dumps(fleet.pipelines[u].id) for u in p.upstream)}]")
    lines.append(f"    tags: {{{tags}}}")
    return lines


def _team_namespaces(fleet: Fleet, declared: set[str]) -> list[tuple[str, str, int]]:
    """(namespace, team, tier) for a cron host and a dbt project that belong to one team and hold
    several undeclared pipelines; the tier is the one most of those pipelines have."""
    members: dict[str, list[Pipeline]] = {}
    for p in fleet.pipelines:
        if p.id not in declared:
            members.setdefault(p.namespace, []).append(p)
    picked = []
    for scheme in ("cron://", "dbt://"):
        options = [ns for ns, ps in members.items()
                   if ns.startswith(scheme) and len(ps) >= 2 and len({p.team for p in ps}) == 1
                   and all(p.team == ps[0].team for p in fleet.pipelines if p.namespace == ns)]
        if options:
            ns = max(options, key=lambda n: (len(members[n]), n))
            tiers = [p.tier for p in members[ns]]
            picked.append((ns, members[ns][0].team, max(set(tiers), key=lambda t: (tiers.count(t), -t))))
    return picked


def _duration(seconds: float) -> str:
    """Rounded up to a whole number of minutes below an hour, of hours above."""
    minutes = -(-seconds // (MINUTE / SECOND))
    if minutes < 60:
        return f"{int(minutes)}m"
    return f"{int(-(-minutes // 60))}h"
