"""Severity: the one place where an alert's severity is decided. PagerDuty's four levels.

    kind               base      tier 1   tier 3   score     blast radius            age
    failure            error     +1       -1       -         +1 if >= 10 downstream  a warning open
    late               warning   +1       -1       -         pipelines or >= 3       longer than
    sla_miss           error     +1       -1       -         downstream teams        `warning_escalates_after`
    running_long       warning   +1       -1       -                                 (default 4h) is
    duration_anomaly   warning   +1       -1       +1 if score >= 2x the alarm line   raised to error
    volume_anomaly     warning   +1       -1       +1 if score >= 2x the alarm line
    failure_rate       warning   +1       -1       -
    extra_run          info      -        -        -
    schema_change      info      -        -        -
    upstream_failure   info      never raised: an impact notice
    receiver_failing   error     -        -        -

Levels are clamped to info..critical; tier 2 (the default) adds nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipemon.engine.detect.base import ALARM_SCORE
from pipemon.model import Severity

BASE = {
    "failure": Severity.ERROR, "late": Severity.WARNING, "sla_miss": Severity.ERROR,
    "running_long": Severity.WARNING, "duration_anomaly": Severity.WARNING,
    "volume_anomaly": Severity.WARNING, "failure_rate": Severity.WARNING, "extra_run": Severity.INFO,
    "schema_change": Severity.INFO, "upstream_failure": Severity.INFO, "receiver_failing": Severity.ERROR,
}
FIXED = frozenset({"upstream_failure", "extra_run", "schema_change", "receiver_failing"})
SCORED = frozenset({"duration_anomaly", "volume_anomaly"})
BLAST_PIPELINES = 10
BLAST_TEAMS = 3


@dataclass(frozen=True)
class Impact:
    tier: int | None = None
    score: float = 0.0
    downstream_pipelines: int = 0
    downstream_teams: int = 0
    age_s: float = 0.0


def severity(kind: str, impact: Impact, warning_escalates_after: float) -> tuple[Severity, list[str]]:
    """The severity and the reasons for it (shown with the alert)."""
    base = BASE.get(kind, Severity.WARNING)
    if kind in FIXED:
        return base, [f"{kind} is {base.value}"]
    level = base.level
    why = [f"{kind}: {base.value}"]
    if impact.tier == 1:
        level += 1
        why.append("tier 1: +1")
    elif impact.tier == 3:
        level -= 1
        why.append("tier 3: -1")
    if kind in SCORED and impact.score >= 2 * ALARM_SCORE:
        level += 1
        why.append(f"score {impact.score:.1f} (>= {2 * ALARM_SCORE:g}): +1")
    if impact.downstream_pipelines >= BLAST_PIPELINES or impact.downstream_teams >= BLAST_TEAMS:
        level += 1
        why.append(f"{impact.downstream_pipelines} pipelines of {impact.downstream_teams} teams "
                   "downstream: +1")
    sev = Severity.of_level(level)
    if sev is Severity.WARNING and impact.age_s >= warning_escalates_after:
        sev = Severity.ERROR
        why.append(f"open {impact.age_s / 3600:.1f}h: raised to error")
    return sev, why
