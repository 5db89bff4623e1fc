"""The YAML configuration (`--config pipemon.yaml`): strict, validated on load, frozen.

Every problem is reported with its file:line and key path (`pipemon.yaml:7: pipelines[0].scheduel:
unknown key`), all at once, so a user fixes the file in one pass. Pydantic does the checking; this
module maps its error locations back to YAML lines.
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr,
                      ValidationError, field_validator)

from pipemon import calendars
from pipemon.access import UNOWNED
from pipemon.engine.matchers import Matcher
from pipemon.errors import ConfigError, Problem

# ReceiverConfig is a model created at run time (a key per registered integration), which mypy cannot
# use as a type: it checks against the base class; pydantic validates with the real model.
if TYPE_CHECKING:
    from pipemon.notify.base import ReceiverConfigBase as ReceiverConfig
else:
    from pipemon.notify import ReceiverConfig

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*w)?\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?"
                       r"\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*(?:(\d+)\s*ms)?\s*$")
_UNITS = (604800, 86400, 3600, 60, 1, 0.001)


def parse_duration(v: Any) -> float:
    """'90s', '15m', '1h30m', '2d', '1w' or a number of seconds -> seconds."""
    if isinstance(v, bool):
        raise ValueError("expected a duration such as 30s, 15m, 1h30m or 2d")
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("a duration cannot be negative")
        return float(v)
    if isinstance(v, str):
        m = _DURATION.match(v)
        if m and any(m.groups()):
            return sum(float(g) * u for g, u in zip(m.groups(), _UNITS) if g)
    raise ValueError(f"expected a duration such as 30s, 15m, 1h30m or 2d, got {v!r}")


Duration = Annotated[float, BeforeValidator(parse_duration)]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kib|kb|mib|mb|gib|gb)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "kib": 1 << 10, "kb": 1000, "mib": 1 << 20, "mb": 10**6, "gib": 1 << 30,
               "gb": 10**9}


def parse_size(v: Any) -> int:
    """'64MiB', '500MB', '1GiB', '4096' or a number of bytes -> bytes."""
    if isinstance(v, bool):
        raise ValueError("expected a size such as 64MiB, 500MB or 1GiB")  # noqa: TRY004 (pydantic wants it)
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("a size cannot be negative")
        return int(v)
    if isinstance(v, str):
        m = _SIZE.match(v)
        if m:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower() if m.group(2) else None])
    raise ValueError(f"expected a size such as 64MiB, 500MB or 1GiB, got {v!r}")


Size = Annotated[int, BeforeValidator(parse_size)]


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    if s == 0:
        return "0s"
    out = []
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= n:
            out.append(f"{s // n}{unit}")
            s %= n
    return "".join(out)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineRule(_Strict):
    """What the config declares about the pipelines a glob matches (the first matching rule wins)."""

    match: str = Field(min_length=1)
    team: str | None = None
    tier: int | None = Field(default=None, ge=1, le=3)
    schedule: str | None = None
    timezone: str = "UTC"
    grace: Duration | None = None
    max_duration: Duration | None = None
    sla: str | None = None
    depends_on: tuple[str, ...] = ()
    tags: dict[str, str] = {}
    sensitivity: float | None = Field(default=None, gt=0)
    page_after_failures: int | None = Field(default=None, ge=1)
    calendar: str | None = None  # public holidays (`US`, `UK`, `DE` ...): a holiday's low volume is normal

    @field_validator("calendar")
    @classmethod
    def _calendar(cls, v: str | None) -> str | None:
        return None if v is None else calendars.check(v)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and not croniter.is_valid(v):
            raise ValueError(f"not a valid cron expression: {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {v!r} (use an IANA name such as Europe/Berlin)") from None
        return v

    @field_validator("sla")
    @classmethod
    def _sla(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                dtime.fromisoformat(v)
            except ValueError:
                raise ValueError(f"expected a time of day HH:MM, got {v!r}") from None
        return v

    @field_validator("depends_on")
    @classmethod
    def _deps(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for d in v:
            if "/" not in d.strip("/"):
                raise ValueError(f"{d!r} is not a pipeline id namespace/name")
        return v

    def matches(self, pipeline: str) -> bool:
        return fnmatch.fnmatchcase(pipeline, self.match)


def _matchers(v: Any) -> tuple[Matcher, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)):
        raise ValueError('expected a list of matchers such as [\'team="payments"\']')
    return tuple(m if isinstance(m, Matcher) else Matcher.parse(str(m)) for m in v)


Matchers = Annotated[tuple[Matcher, ...], BeforeValidator(_matchers)]


class Route(_Strict):
    """A node of the routing tree (Alertmanager's shape). Unset timers and group_by inherit the parent's."""

    receiver: str | None = None
    matchers: Matchers = ()
    group_by: tuple[str, ...] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    # Repeats follow the pipeline's schedule: no more often than once an interval of it (a daily failure
    # is repeated daily), between repeat_interval and this bound. Set it to repeat_interval to turn it off.
    max_repeat_interval: Duration | None = None
    continue_: bool = Field(default=False, alias="continue")
    escalation: str | None = None
    page_after_failures: int | None = Field(default=None, ge=1)
    routes: tuple[Route, ...] = ()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              arbitrary_types_allowed=True)


class EscalationStep(_Strict):
    after: Duration
    receiver: str


class EscalationPolicy(_Strict):
    name: str
    steps: tuple[EscalationStep, ...] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=100)


class InhibitRule(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    source_matchers: Matchers
    target_matchers: Matchers
    equal: tuple[str, ...] = ()


class MaintenanceWindow(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    name: str
    matchers: Matchers = ()
    schedule: str
    duration: Duration
    timezone: str = "UTC"

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        if not croniter.is_valid(v):
            raise ValueError(f"not a valid cron expression: {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return PipelineRule._tz(v)


class Alerting(_Strict):
    external_url: str | None = None          # where the dashboard lives, for links in notifications
    warning_escalates_after: Duration = 4 * 3600.0   # a warning still open after this is raised to error
    receiver_failure_threshold: int = Field(default=5, ge=1)  # consecutive failed deliveries -> an alert


class Limits(_Strict):
    max_body: int = Field(default=1 << 20, ge=1024)          # one event (OpenLineage, ping, native single)
    max_batch_body: int = Field(default=16 << 20, ge=1024)   # a native batch of up to 10,000 events
    new_pipelines_per_minute: int = Field(default=600, ge=1)  # per API token (admission.py)


class Cache(_Strict):
    """In-memory caches, each bounded by an estimate of its size in bytes (README: Operating at scale)."""
    runs: Size = Field(default=64 << 20, ge=0)      # recent runs, so an END finds its START unread
    metrics: Size = Field(default=64 << 20, ge=0)   # each pipeline's /metrics text, kept between scrapes


TEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _team_name(v: str) -> str:
    if not TEAM_NAME.match(v):
        raise ValueError(f"{v!r} is not a team name (letters, digits, '_', '.', '-'; at most 64)")
    if v == UNOWNED:
        raise ValueError(f"{v!r} is reserved for pipelines nobody owns")
    return v


TeamName = Annotated[str, AfterValidator(_team_name)]


class Team(_Strict):
    """An entry of `teams:`: who owns pipelines and alerts (routes, tokens and config files name it)."""
    name: TeamName
    display_name: str | None = None
    contact: str | None = None
    calendar: str | None = None  # the team's public holidays, for its pipelines that name none

    @field_validator("calendar")
    @classmethod
    def _calendar(cls, v: str | None) -> str | None:
        return None if v is None else calendars.check(v)


class Settings(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    teams: tuple[Team, ...] = ()
    include: tuple[str, ...] = ()   # globs of team files, relative to the main file (config.d/*.yaml)
    pipelines: tuple[PipelineRule, ...] = ()
    retention: Duration = 90 * 86400.0
    limits: Limits = Limits()
    receivers: tuple[ReceiverConfig, ...] = ()
    route: Route = Route()
    escalation_policies: tuple[EscalationPolicy, ...] = ()
    inhibit_rules: tuple[InhibitRule, ...] = ()
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()
    alerting: Alerting = Alerting()
    cache: Cache = Cache()

    def receiver(self, name: str) -> ReceiverConfig | None:
        return next((r for r in self.receivers if r.name == name), None)

    _matched: dict[str, PipelineRule | None] = PrivateAttr(default_factory=dict)
    # The routes of the team files (teamconfig.merge), each already confined to its team: compiled as the
    # root's first children, with ids of their own (`root.team[payments]`) that other teams' edits keep.
    _team_routes: tuple[tuple[str, Route], ...] = PrivateAttr(default=())
    _team_rules: frozenset[int] = PrivateAttr(default=frozenset())  # id() of the rules from team files

    def team_routes(self) -> tuple[tuple[str, Route], ...]:
        return self._team_routes

    def with_parts(self, team_routes: tuple[tuple[str, Route], ...], team_rules: frozenset[int] = frozenset(),
                   **fields: Any) -> Settings:
        """A copy with `fields` replaced and the team files' routes and rules marked (the memo of rule_for
        starts empty)."""
        out = self.model_copy(update=fields)
        out._matched = {}
        out._team_routes = team_routes
        out._team_rules = team_rules
        return out

    def config_owner(self, pipeline: str) -> tuple[str | None, bool]:
        """The team the config gives a pipeline, and whether a team's own file says so (ownership.owner)."""
        rule = self.rule_for(pipeline)
        if rule is None or not rule.team:
            return None, False
        return rule.team, id(rule) in self._team_rules

    def team_names(self) -> set[str]:
        return {t.name for t in self.teams}

    def calendar_for(self, pipeline: str, team: str | None) -> str | None:
        """The holiday calendar of a pipeline: its rule's `calendar:`, else its owning team's."""
        rule = self.rule_for(pipeline)
        if rule is not None and rule.calendar:
            return rule.calendar
        return next((t.calendar for t in self.teams if t.name == team), None) if team else None

    def rule_for(self, pipeline: str) -> PipelineRule | None:
        """The first rule whose glob matches (memoised: globs are checked once per pipeline)."""
        private = self.__pydantic_private__
        assert private is not None  # a model with private attributes always has this dict
        memo = private["_matched"]  # direct: pydantic's __getattr__ costs microseconds
        try:
            return memo[pipeline]
        except KeyError:
            rule = next((r for r in self.pipelines if r.matches(pipeline)), None)
            memo[pipeline] = rule
            return rule


def load(path: str | Path | None) -> Settings:
    if path is None:
        return Settings()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError([Problem(str(p), f"cannot read: {e.strerror}")]) from None
    return loads(text, str(p))


def loads(text: str, filename: str = "<config>") -> Settings:
    data, lines = parse_yaml(text, filename)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(f"{filename}:1", "the configuration must be a mapping of sections")])
    return validate(Settings, data, lines, filename)


def validate(model: type[M], data: dict, lines: dict[tuple, int], filename: str,
             known: References | None = None) -> M:
    """`data` as `model`, or a ConfigError with every problem at once: the schema's and the references'
    (a route or policy naming a receiver or policy that does not exist), each at its file:line."""
    problems = [locate(lines, filename, loc, msg) for loc, msg in references(data, known)]
    try:
        out = model.model_validate(data)
    except ValidationError as e:
        problems += [_problem(err, lines, filename) for err in e.errors()]
        out = None
    if problems or out is None:
        raise ConfigError(sorted(problems, key=lambda p: int(p.loc.rsplit(":", 1)[1])))
    return out


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class References:
    """Names a file may refer to besides its own (a team file: the main file's receivers and policies)."""
    receivers: frozenset[str] = frozenset()
    policies: frozenset[str] = frozenset()


def _names(items: Any, field: str = "name") -> list[tuple[int, str]]:
    if not isinstance(items, list):
        return []
    return [(i, it[field]) for i, it in enumerate(items)
            if isinstance(it, dict) and isinstance(it.get(field), str)]


def references(data: Mapping[str, Any], known: References | None = None) -> list[tuple[tuple, str]]:
    """Every dangling or duplicate name in a file's raw data, as (key path, message). Checked on the raw
    data, so these are reported together with schema errors elsewhere in the file."""
    known = known or References()
    out: list[tuple[tuple, str]] = []
    receivers = _names(data.get("receivers"))
    policies = _names(data.get("escalation_policies"))
    for section, names, outside in (("receivers", receivers, known.receivers),
                                    ("escalation_policies", policies, known.policies)):
        seen: set[str] = set()
        for i, name in names:
            if name in seen:
                out.append(((section, i, "name"), f"duplicate name {name!r}"))
            elif name in outside:
                out.append(((section, i, "name"), f"{name!r} is already defined in the main file"))
            seen.add(name)
    rnames = {n for _, n in receivers} | known.receivers
    pnames = {n for _, n in policies} | known.policies

    def walk(route: Any, path: tuple) -> None:
        if not isinstance(route, dict):
            return
        rec, esc = route.get("receiver"), route.get("escalation")
        if isinstance(rec, str) and rec not in rnames:
            out.append((path + ("receiver",), f"no receiver named {rec!r}"))
        if isinstance(esc, str) and esc not in pnames:
            out.append((path + ("escalation",), f"no escalation policy named {esc!r}"))
        children = route.get("routes")
        if isinstance(children, list):
            for i, child in enumerate(children):
                walk(child, path + ("routes", i))
    if "route" in data:
        walk(data["route"], ("route",))
    raw_policies = data.get("escalation_policies")
    for i, _ in policies:
        assert isinstance(raw_policies, list)
        for j, rec in _names(raw_policies[i].get("steps"), "receiver"):
            if rec not in rnames:
                out.append((("escalation_policies", i, "steps", j, "receiver"), f"no receiver named {rec!r}"))
    return out


def unused_receivers(settings: Settings) -> list[str]:
    """Receivers that no route (main or team) and no escalation step names: a warning, not an error."""
    used: set[str] = set()

    def walk(route: Route) -> None:
        if route.receiver:
            used.add(route.receiver)
        for child in route.routes:
            walk(child)
    walk(settings.route)
    for _, r in settings.team_routes():
        walk(r)
    used |= {step.receiver for p in settings.escalation_policies for step in p.steps}
    return [r.name for r in settings.receivers if r.name not in used]


def locate(lines: dict[tuple, int], filename: str, loc: tuple, msg: str) -> Problem:
    """A problem at key path `loc`, placed on the line of its deepest located ancestor."""
    line = None
    for n in range(len(loc), -1, -1):
        line = lines.get(loc[:n])
        if line is not None:
            break
    path = "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else str(k)) for i, k in enumerate(loc))
    return Problem(f"{filename}:{line or 1}", f"{path}: {msg}" if path else msg)


_PATH_IN_MSG = re.compile(r"^(?:Value error, )?([a-z_]+(?:\[\d+\]|\.[a-z_]+)*): ")


def _problem(err: Mapping[str, Any], lines: dict[tuple, int], filename: str) -> Problem:
    loc = tuple(err["loc"])
    m = _PATH_IN_MSG.match(err["msg"]) if not loc else None
    if m:  # a cross-reference check names its own path: point at that line
        loc = tuple(int(k) if k.isdigit() else k for k in re.findall(r"[a-z_]+|\d+", m.group(1)))
        err = {**err, "msg": err["msg"][m.end():]}
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
    return locate(lines, filename, loc, msg)


def parse_yaml(text: str, filename: str) -> tuple[Any, dict[tuple, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[tuple, int] = {(): 1}
        return (_walk(node, (), lines, loader, filename) if node is not None else None), lines
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise ConfigError([Problem(where, f"not valid YAML: {getattr(e, 'problem', None) or e}")]) from None
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int], loader: yaml.SafeLoader,
          filename: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k_node, v_node in node.value:
            key = loader.construct_object(k_node, deep=True)
            if key in out:
                raise ConfigError([Problem(f"{filename}:{k_node.start_mark.line + 1}",
                                           f"duplicate key {key!r}")])
            lines[path + (key,)] = k_node.start_mark.line + 1
            out[key] = _walk(v_node, path + (key,), lines, loader, filename)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            items.append(_walk(item, path + (i,), lines, loader, filename))
        return items
    return loader.construct_object(node, deep=True)
