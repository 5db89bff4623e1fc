"""What keeps an alert from being notified, though it is still recorded and visible: silences,
maintenance windows (recurring: cron + duration), and inhibition (a firing source alert mutes matching
targets that share the `equal` labels). Pure: time is passed in."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from pipemon.config import InhibitRule, MaintenanceWindow
from pipemon.engine.matchers import Matcher, match_all


@dataclass(frozen=True)
class Silence:
    id: int
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    team: str | None = None  # created by a team's token: mutes that team's alerts only (None: org-wide)

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        """A team's silence never reaches another team's alert, whatever its matchers say."""
        return (self.team is None or labels.get("team") == self.team) and match_all(self.matchers, labels)


class Muter:
    def __init__(self, windows: Iterable[MaintenanceWindow] = (),
                 inhibit: Iterable[InhibitRule] = ()) -> None:
        self.silences: dict[int, Silence] = {}
        self.windows = tuple(windows)
        self.inhibit = tuple(inhibit)
        # name -> (checked_for_minute, start, end)
        self._window_cache: dict[str, tuple[float, float, float]] = {}

    # --- silences and maintenance ---------------------------------------------------------------------
    def silence_for(self, labels: Mapping[str, str], now: float) -> Silence | None:
        for s in self.silences.values():
            if s.active(now) and s.matches(labels):
                return s
        return None

    def window_for(self, labels: Mapping[str, str], now: float) -> MaintenanceWindow | None:
        for w in self.windows:
            if match_all(w.matchers, labels) and self._window_active(w, now):
                return w
        return None

    def _window_active(self, w: MaintenanceWindow, now: float) -> bool:
        minute = now // 60
        cached = self._window_cache.get(w.name)
        if cached is None or cached[0] != minute:
            # the latest start at or before now (croniter's get_prev is strict, so look from a second later)
            start = croniter(w.schedule,
                             datetime.fromtimestamp(now + 1, ZoneInfo(w.timezone))).get_prev(float)
            cached = (minute, start, start + w.duration)
            self._window_cache[w.name] = cached
        return cached[1] <= now < cached[2]

    def quiet_reason(self, labels: Mapping[str, str], now: float) -> str | None:
        """Silenced or in maintenance: the reason, for the alert."""
        q = self.quiet(labels, now)
        return q[0] if q is not None else None

    def quiet(self, labels: Mapping[str, str], now: float) -> tuple[str, float] | None:
        """Silenced or in maintenance: the reason and when it ends (the pipeline's `muted` marker)."""
        s = self.silence_for(labels, now)
        if s is not None:
            return (f"silenced by #{s.id} ({s.created_by}: {s.comment})" if s.comment
                    else f"silenced by #{s.id}"), s.ends_at
        w = self.window_for(labels, now)
        if w is not None:
            return f"in maintenance window {w.name}", self._window_cache[w.name][2]
        return None

    # --- inhibition ---------------------------------------------------------------------------------------
    def inhibited_by(self, target_fp: str, target: Mapping[str, str],
                     firing: Iterable[tuple[str, Mapping[str, str]]]) -> str | None:
        """The fingerprint of a firing alert that inhibits this one, if any."""
        rules = [r for r in self.inhibit if match_all(r.target_matchers, target)]
        if not rules:
            return None
        for fp, labels in firing:
            if fp == target_fp:
                continue
            for r in rules:
                if match_all(r.source_matchers, labels) and all(labels.get(k) == target.get(k)
                                                                 for k in r.equal):
                    return fp
        return None
