"""The YAML configuration (`--config pipemon.yaml`): strict, validated on load, frozen.

Every problem is reported with its file:line and key path (`pipemon.yaml:7: pipelines[0].scheduel:
unknown key`), all at once, so a user fixes the file in one pass. Pydantic does the checking; this
module maps its error locations back to YAML lines.
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError,
                      field_validator, model_validator)

from pipemon import calendars
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


class Cache(_Strict):
    """In-memory caches, each bounded by an estimate of its size in bytes (README: Operating at scale)."""
    runs: Size = Field(default=64 << 20, ge=0)      # recent runs, so an END finds its START unread
    metrics: Size = Field(default=64 << 20, ge=0)   # each pipeline's /metrics text, kept between scrapes


class Settings(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
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

    @model_validator(mode="after")
    def _references(self) -> Settings:
        """Every receiver and policy a route or policy names must exist (Alertmanager checks the same)."""
        names = [r.name for r in self.receivers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"receivers: duplicate name {sorted(dup)[0]!r}")
        policies = {p.name for p in self.escalation_policies}
        known = set(names)

        def walk(route: Route, path: str) -> None:
            if route.receiver is not None and route.receiver not in known:
                raise ValueError(f"{path}.receiver: no receiver named {route.receiver!r}")
            if route.escalation is not None and route.escalation not in policies:
                raise ValueError(f"{path}.escalation: no escalation policy named {route.escalation!r}")
            for i, child in enumerate(route.routes):
                walk(child, f"{path}.routes[{i}]")
        walk(self.route, "route")
        for i, p in enumerate(self.escalation_policies):
            for j, step in enumerate(p.steps):
                if step.receiver not in known:
                    raise ValueError(f"escalation_policies[{i}].steps[{j}].receiver: no receiver named "
                                     f"{step.receiver!r}")
        return self

    def receiver(self, name: str) -> ReceiverConfig | None:
        return next((r for r in self.receivers if r.name == name), None)

    _matched: dict[str, PipelineRule | None] = PrivateAttr(default_factory=dict)

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
    data, lines = _parse_yaml(text, filename)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(f"{filename}:1", "the configuration must be a mapping of sections")])
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        problems = [_problem(err, lines, filename) for err in e.errors()]
        raise ConfigError(sorted(problems, key=lambda p: int(p.loc.rsplit(":", 1)[1]))) from None


_PATH_IN_MSG = re.compile(r"^(?:Value error, )?([a-z_]+(?:\[\d+\]|\.[a-z_]+)*): ")


def _problem(err: Mapping[str, Any], lines: dict[tuple, int], filename: str) -> Problem:
    loc = tuple(err["loc"])
    m = _PATH_IN_MSG.match(err["msg"]) if not loc else None
    if m:  # a cross-reference check names its own path: point at that line
        loc = tuple(int(k) if k.isdigit() else k for k in re.findall(r"[a-z_]+|\d+", m.group(1)))
        err = {**err, "msg": err["msg"][m.end():]}
    line = None
    for n in range(len(loc), -1, -1):  # the deepest located ancestor
        line = lines.get(loc[:n])
        if line is not None:
            break
    path = "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else str(k)) for i, k in enumerate(loc))
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    else:
        msg = err["msg"].removeprefix("Value error, ")
    return Problem(f"{filename}:{line or 1}", f"{path}: {msg}" if path else msg)


def _parse_yaml(text: str, filename: str) -> tuple[Any, dict[tuple, int]]:
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
