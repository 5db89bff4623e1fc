"""Re-reading the configuration while serving (SIGHUP, `POST /api/v1/config/reload`).

The files are read and judged first (teamconfig: each team file alone); then, if the main file is valid,
the merged settings are swapped in on the writer thread between batches (`Pipemon.reconfigure`). A team
whose file is invalid keeps its last good part and every other team's change applies; an invalid main
file changes nothing. Each file's outcome is kept for /metrics
(`pipemon_config_last_reload_success{team}`, `pipemon_config_last_reload_timestamp_seconds{team}`) and
answered to the caller.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily

from pipemon.access import Caller, Role
from pipemon.teamconfig import MAIN, ConfigSource, Loaded, TeamPart, TeamStatus

if TYPE_CHECKING:
    from pipemon.app import Pipemon

log = logging.getLogger(__name__)


@dataclass
class ReloadReport:
    applied: bool                       # the new settings are in effect (the main file was valid)
    main_problems: tuple[str, ...]
    teams: dict[str, TeamStatus]
    at: float

    @property
    def ok(self) -> bool:
        return self.applied and all(s.ok for s in self.teams.values())

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "applied": self.applied,
                "main": {"ok": not self.main_problems, "problems": list(self.main_problems)},
                "teams": {k: {"team": s.team, "file": s.file, "ok": s.ok, "problems": list(s.problems),
                              "kept": s.kept} for k, s in sorted(self.teams.items())}}


@dataclass
class _Outcome:
    ok: bool
    at: float  # unix time


@dataclass
class Reloader:
    source: ConfigSource
    good: dict[str, TeamPart] = field(default_factory=dict)      # each team's part in effect
    outcomes: dict[str, _Outcome] = field(default_factory=dict)  # /metrics, per team and MAIN
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def initial(self) -> Loaded:
        """The first reading, at start-up (no last good part yet): the caller decides what an invalid main
        file means (serve refuses to start)."""
        loaded = self.source.read({})
        if loaded.settings is not None:
            self.good = dict(loaded.good)
            self._record(loaded, time.time())
        return loaded

    def reload(self, pm: Pipemon, actor: Caller | None = None) -> ReloadReport:
        """Re-read the files and apply what is valid; `actor` (default: the SIGHUP signal) is audited."""
        with self._lock:  # SIGHUP and the API may ask at once: one reload at a time
            now = time.time()
            loaded = self.source.read(self.good)
            if loaded.settings is None:
                self.outcomes[MAIN] = _Outcome(False, now)
                log.error("config reload rejected, nothing changed: %s", "; ".join(loaded.main_problems))
                return ReloadReport(False, loaded.main_problems, {}, now)
            pm.reconfigure(loaded.settings)
            self.good = dict(loaded.good)
            self._record(loaded, now)
            _audit(pm, actor or SIGHUP, loaded, now)
            for s in loaded.statuses.values():
                if not s.ok:
                    log.warning("config reload: team %s's file %s rejected (%s): %s", s.team, s.file,
                                f"kept its {s.kept} config" if s.kept else "no config of it in effect",
                                "; ".join(s.problems))
            log.info("config reloaded: %d team files, %d rejected", len(loaded.statuses),
                     sum(not s.ok for s in loaded.statuses.values()))
            return ReloadReport(True, (), dict(loaded.statuses), now)

    def _record(self, loaded: Loaded, now: float) -> None:
        self.outcomes = {k: v for k, v in self.outcomes.items() if k == MAIN}  # teams whose file is gone go
        self.outcomes[MAIN] = _Outcome(True, now)
        for s in loaded.statuses.values():
            self.outcomes[s.team] = _Outcome(s.ok, now)

    def metric_families(self) -> Iterator[GaugeMetricFamily]:
        ok = GaugeMetricFamily("pipemon_config_last_reload_success", "1 when the last (re)load of this "
                               "team's config file succeeded, else 0 (team=\"_main\": the main file)",
                               labels=["team"])
        at = GaugeMetricFamily("pipemon_config_last_reload_timestamp_seconds",
                               "When this team's config file was last (re)loaded, unix time", labels=["team"])
        for team, o in sorted(self.outcomes.items()):
            ok.add_metric([team], int(o.ok))
            at.add_metric([team], o.at)
        yield ok
        yield at


SIGHUP = Caller(name="sighup", role=Role.ORG_ADMIN)  # the actor of a reload asked for by the signal


def _audit(pm: Pipemon, actor: Caller, loaded: Loaded, now: float) -> None:
    """The reload in the audit log: applied, and which team files were rejected (written by the writer)."""
    from pipemon.store import audit

    rejected = sorted(s.team for s in loaded.statuses.values() if not s.ok)
    detail = {"team_files": len(loaded.statuses), "rejected": rejected}
    try:
        pm.writer.call(lambda conn, _now: audit.record(conn, actor=actor, action="config.reload",
                                                       target="config", team=None, detail=detail, now=now))
    except Exception as e:  # noqa: BLE001 - the reload stands even when its record cannot be written now
        log.warning("config reload applied but not audited: %s", e)

