"""Configuration per team: one file per team beside the main file (`--config-dir config.d/`, or
`include: [config.d/*.yaml]` in the main file), merged into one Settings.

A team file holds its team's pipelines, receivers, route, escalation policies, maintenance windows and
inhibit rules. It can reach only its own team's alerts: its route, windows and inhibit rules are confined
to `team="<team>"` here, and its pipeline rules belong to its team. The main file decides what is
org-wide and comes first (its pipeline rules win a glob both match). Each file is judged alone: a bad
team file is rejected with all its problems, and that team keeps its last good part while every other
team's change applies (`combine`, pure; reading the files is `ConfigSource`).
"""
from __future__ import annotations

import glob
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipemon.access import UNOWNED
from pipemon.config import (TEAM_NAME, EscalationPolicy, InhibitRule, MaintenanceWindow, PipelineRule,
                            References, Route, Settings, TeamName, _Strict, load, locate, parse_yaml,
                            validate)
from pipemon.engine.matchers import Matcher, Op
from pipemon.errors import ConfigError, Problem

if TYPE_CHECKING:
    from pipemon.notify.base import ReceiverConfigBase as ReceiverConfig
else:
    from pipemon.notify import ReceiverConfig

MAIN = "_main"  # the main file's entry among the teams' (a team name cannot start with "_")


class TeamFile(_Strict):
    """One file of `config.d/`. `team:` names its team; without it, the file name does (payments.yaml)."""
    team: TeamName | None = None
    pipelines: tuple[PipelineRule, ...] = ()
    receivers: tuple[ReceiverConfig, ...] = ()
    route: Route | None = None
    escalation_policies: tuple[EscalationPolicy, ...] = ()
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()
    inhibit_rules: tuple[InhibitRule, ...] = ()


@dataclass(frozen=True)
class TeamPart:
    """A team file, validated and confined to its team: what the merge adds to the main file."""
    team: str
    file: str
    pipelines: tuple[PipelineRule, ...] = ()
    receivers: tuple[ReceiverConfig, ...] = ()
    route: Route | None = None
    escalation_policies: tuple[EscalationPolicy, ...] = ()
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()
    inhibit_rules: tuple[InhibitRule, ...] = ()


@dataclass(frozen=True)
class FileResult:
    team: str
    file: str
    part: TeamPart | None               # None: the file is invalid
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class TeamStatus:
    team: str
    file: str
    ok: bool                            # this file, as it is now, is in effect
    problems: tuple[str, ...] = ()
    kept: str | None = None             # "last good" when the team runs on its previous file


@dataclass
class Combined:
    settings: Settings
    statuses: dict[str, TeamStatus] = field(default_factory=dict)
    good: dict[str, TeamPart] = field(default_factory=dict)   # what is in effect, per team


def team_matcher(team: str) -> Matcher:
    return Matcher("team", Op.EQ, team)


def parse_team(text: str, filename: str, main: Settings) -> FileResult:
    """A team file's text -> its confined part, or every problem in it (pure)."""
    stem = Path(filename).stem
    try:
        data, lines = parse_yaml(text, filename)
    except ConfigError as e:
        return FileResult(stem, filename, None, tuple(e.problems))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return FileResult(stem, filename, None,
                          (Problem(f"{filename}:1", "a team file must be a mapping of sections"),))
    named = data.get("team")
    team: str = named if isinstance(named, str) else stem
    extra = [locate(lines, filename, loc, msg) for loc, msg in _team_problems(data, team, main)]
    known = References(frozenset(r.name for r in main.receivers),
                       frozenset(p.name for p in main.escalation_policies))
    try:
        tf = validate(TeamFile, data, lines, filename, known)
    except ConfigError as e:
        problems = sorted([*e.problems, *extra], key=lambda p: int(p.loc.rsplit(":", 1)[1]))
        return FileResult(team, filename, None, tuple(problems))
    if extra:
        return FileResult(team, filename, None, tuple(extra))
    return FileResult(team, filename, confine(tf, team, filename))


def _team_problems(data: Mapping[str, Any], team: str, main: Settings) -> list[tuple[tuple, str]]:
    """What only a team file can get wrong: an undeclared team, pipelines of another team, names the main
    file already uses."""
    out: list[tuple[tuple, str]] = []
    if "team" not in data and (not TEAM_NAME.match(team) or team == UNOWNED):
        out.append(((), f"the file name {team!r} is not a team name: rename the file or put `team: NAME` "
                        "at its top"))
    declared = main.team_names()
    if declared and team not in declared:
        out.append((("team",), f"team {team!r} is not declared under teams: in the main file "
                               f"(declared: {', '.join(sorted(declared))})"))
    pipelines = data.get("pipelines")
    for i, rule in enumerate(pipelines if isinstance(pipelines, list) else []):
        other = rule.get("team") if isinstance(rule, dict) else None
        if isinstance(other, str) and other != team:
            out.append((("pipelines", i, "team"),
                        f"a pipeline of team {team}'s file must belong to {team}, not {other!r}"))
    windows = data.get("maintenance_windows")
    main_windows = {w.name for w in main.maintenance_windows}
    for i, w in enumerate(windows if isinstance(windows, list) else []):
        if isinstance(w, dict) and w.get("name") in main_windows:
            out.append((("maintenance_windows", i, "name"),
                        f"{w['name']!r} is already defined in the main file"))
    return out


def confine(tf: TeamFile, team: str, filename: str) -> TeamPart:
    """Only the team's own alerts: its route, windows and inhibit rules get `team="<team>"` first; its
    pipeline rules get the team. The route continues, so the main file's org-wide routes still see them."""
    m = team_matcher(team)
    route = None
    if tf.route is not None:
        route = tf.route.model_copy(update={"matchers": (m, *tf.route.matchers), "continue_": True})
    return TeamPart(
        team=team, file=filename,
        pipelines=tuple(r if r.team else r.model_copy(update={"team": team}) for r in tf.pipelines),
        receivers=tf.receivers, route=route, escalation_policies=tf.escalation_policies,
        maintenance_windows=tuple(w.model_copy(update={"matchers": (m, *w.matchers)})
                                  for w in tf.maintenance_windows),
        inhibit_rules=tuple(r.model_copy(update={"source_matchers": (m, *r.source_matchers),
                                                 "target_matchers": (m, *r.target_matchers)})
                            for r in tf.inhibit_rules))


def _clashes(part: TeamPart, main: Settings, taken: dict[str, dict[str, str]]) -> list[str]:
    """Why `part` cannot join now: names another file already uses, or references the main file no longer
    satisfies (a last good part was checked against the main file of its time)."""
    out = []
    for kind, names in (("receiver", [r.name for r in part.receivers]),
                        ("escalation policy", [p.name for p in part.escalation_policies]),
                        ("maintenance window", [w.name for w in part.maintenance_windows])):
        for n in names:
            owner = taken[kind].get(n)
            if owner is not None:
                out.append(f"{kind} {n!r} is already defined by {owner}")
    receivers = {r.name for r in part.receivers} | {r.name for r in main.receivers}
    policies = {p.name for p in part.escalation_policies} | {p.name for p in main.escalation_policies}

    def walk(r: Route, path: str) -> None:
        if r.receiver is not None and r.receiver not in receivers:
            out.append(f"{path}.receiver: no receiver named {r.receiver!r}")
        if r.escalation is not None and r.escalation not in policies:
            out.append(f"{path}.escalation: no escalation policy named {r.escalation!r}")
        for i, c in enumerate(r.routes):
            walk(c, f"{path}.routes[{i}]")
    if part.route is not None:
        walk(part.route, "route")
    for p in part.escalation_policies:
        out += [f"escalation_policies.{p.name}: no receiver named {s.receiver!r}"
                for s in p.steps if s.receiver not in receivers]
    return out


def combine(main: Settings, results: list[FileResult], last_good: Mapping[str, TeamPart]) -> Combined:
    """The main file plus every team's part: its new file when valid, else its last good part (reported),
    else nothing of it. Teams are taken in name order; names clash first come, first served (pure)."""
    taken: dict[str, dict[str, str]] = {
        "receiver": {r.name: "the main file" for r in main.receivers},
        "escalation policy": {p.name: "the main file" for p in main.escalation_policies},
        "maintenance window": {w.name: "the main file" for w in main.maintenance_windows}}
    out = Combined(main)
    seen_files: dict[str, str] = {}
    for res in sorted(results, key=lambda r: (r.team, r.file)):
        problems = [str(p) for p in res.problems]
        if res.team in seen_files:
            out.statuses[f"{res.team}@{res.file}"] = TeamStatus(
                res.team, res.file, False, (f"{res.file}: team {res.team!r} already has a file: "
                                            f"{seen_files[res.team]}",))
            continue
        seen_files[res.team] = res.file
        chosen: TeamPart | None = None
        kept = None
        if res.part is not None:
            clash = _clashes(res.part, main, taken)
            if clash:
                problems += [f"{res.file}: {c}" for c in clash]
            else:
                chosen = res.part
        if chosen is None and res.team in last_good and not _clashes(last_good[res.team], main, taken):
            chosen, kept = last_good[res.team], "last good"
        if chosen is not None:
            out.good[res.team] = chosen
            for kind, names in (("receiver", [r.name for r in chosen.receivers]),
                                ("escalation policy", [p.name for p in chosen.escalation_policies]),
                                ("maintenance window", [w.name for w in chosen.maintenance_windows])):
                for n in names:
                    taken[kind][n] = f"team {res.team}'s file"
        out.statuses[res.team] = TeamStatus(res.team, res.file, not problems, tuple(problems), kept)
    out.settings = merge(main, out.good)
    return out


def merge(main: Settings, parts: Mapping[str, TeamPart]) -> Settings:
    ps = [parts[t] for t in sorted(parts)]
    team_rules = tuple(r for p in ps for r in p.pipelines)
    return main.with_parts(
        tuple((p.team, p.route) for p in ps if p.route is not None), frozenset(map(id, team_rules)),
        pipelines=main.pipelines + team_rules,
        receivers=main.receivers + tuple(r for p in ps for r in p.receivers),
        escalation_policies=main.escalation_policies + tuple(x for p in ps for x in p.escalation_policies),
        maintenance_windows=main.maintenance_windows + tuple(x for p in ps for x in p.maintenance_windows),
        inhibit_rules=main.inhibit_rules + tuple(x for p in ps for x in p.inhibit_rules))


@dataclass
class Loaded:
    """One reading of the files: the merged settings (None when the main file is invalid) and each file's
    status; `main_problems` are the main file's."""
    settings: Settings | None
    main_problems: tuple[str, ...] = ()
    statuses: dict[str, TeamStatus] = field(default_factory=dict)
    good: dict[str, TeamPart] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.main_problems and all(s.ok for s in self.statuses.values())


class ConfigSource:
    """Where the configuration lives: the main file, `--config-dir`, and the main file's `include:` globs
    (relative to the main file)."""

    def __init__(self, main: str | Path | None, config_dir: str | Path | None = None) -> None:
        self.main = Path(main) if main is not None else None
        self.config_dir = Path(config_dir) if config_dir is not None else None

    def team_files(self, main: Settings) -> list[Path]:
        found: dict[Path, Path] = {}
        if self.config_dir is not None:
            for p in sorted([*self.config_dir.glob("*.yaml"), *self.config_dir.glob("*.yml")]):
                found.setdefault(p.resolve(), p)
        base = self.main.parent if self.main is not None else Path.cwd()
        for pattern in main.include:
            for name in sorted(glob.glob(str(base / pattern))):
                found.setdefault(Path(name).resolve(), Path(name))
        return list(found.values())

    def read(self, last_good: Mapping[str, TeamPart] | None = None) -> Loaded:
        try:
            main = load(self.main)
        except ConfigError as e:
            return Loaded(None, tuple(str(p) for p in e.problems))
        if self.config_dir is not None and not self.config_dir.is_dir():
            return Loaded(None, (f"{self.config_dir}: not a directory (--config-dir)",))
        results = []
        for path in self.team_files(main):
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as e:
                results.append(FileResult(path.stem, str(path), None,
                                          (Problem(str(path), f"cannot read: {getattr(e, 'strerror', e)}"),)))
                continue
            results.append(parse_team(text, str(path), main))
        c = combine(main, results, last_good or {})
        return Loaded(c.settings, (), c.statuses, c.good)
