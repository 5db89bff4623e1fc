from __future__ import annotations

import fnmatch
from pathlib import Path

import yaml

from pipemon import sim

KEYS = {"match", "team", "tier", "schedule", "timezone", "grace", "max_duration", "sla", "depends_on", "tags"}


def first_match(entries: list[dict], pipeline_id: str) -> dict | None:
    return next((e for e in entries if fnmatch.fnmatchcase(pipeline_id, e["match"])), None)


def test_config_declares_some_pipelines_with_the_schema(fleet: sim.Fleet, tmp_path: Path) -> None:
    text = sim.demo_config(fleet, path=tmp_path / "pipemon.yaml")
    assert (tmp_path / "pipemon.yaml").read_text() == text
    entries = yaml.safe_load(text)["pipelines"]
    assert all(e.keys() <= KEYS and {"match", "team", "tier"} <= e.keys() for e in entries)
    covered = {p.id: first_match(entries, p.id) for p in fleet.pipelines}
    declared = [pid for pid, e in covered.items() if e is not None]
    assert 10 <= len(declared) < len(fleet) / 2  # the rest must be learned
    for pid in declared:
        p, e = fleet.by_id[pid], covered[pid]
        assert e["team"] == p.team
        if "schedule" in e:
            assert e["schedule"] == p.schedule.cron and e["tier"] == p.tier
            assert set(e.get("depends_on", [])) == {fleet.pipelines[u].id for u in p.upstream}
    assert any("depends_on" in e for e in entries) and any("sla" in e for e in entries)
    assert any(e["match"].endswith("/*") for e in entries)


def test_declared_thresholds_hold_on_quiet_days(fleet: sim.Fleet) -> None:
    """Without incidents, a month later, no declared pipeline breaks its max_duration or SLA."""
    entries = [e for e in yaml.safe_load(sim.demo_config(fleet))["pipelines"] if "max_duration" in e]
    limits = {e["match"]: e for e in entries}
    start = sim.DEFAULT_START + 30 * 86400
    unit = {"m": 60, "h": 3600}
    for r in sim.run_records(fleet, start, start + 7 * 86400, incidents=sim.NO_INCIDENTS):
        e = limits.get(r.pipeline)
        if e is None:
            continue
        assert r.end - r.start <= int(e["max_duration"][:-1]) * unit[e["max_duration"][-1]]
        if "sla" in e:
            hours, minutes = map(int, e["sla"].split(":"))
            assert r.end - r.nominal_time // 86400 * 86400 <= hours * 3600 + minutes * 60


def test_the_demo_pages_the_terminal_through_the_log_receiver(fleet: sim.Fleet) -> None:
    """`pipemon demo` shows alerting without any outside service: everything routes to a `log` receiver."""
    from pipemon.config import loads
    from pipemon.notify import build_receivers

    settings = loads(sim.demo_config(fleet))
    [terminal] = build_receivers(settings.receivers).values()
    assert terminal.name == "terminal" and [ch.kind for ch in terminal.channels] == ["log"]
    assert settings.route.receiver == "terminal" and tuple(settings.route.group_by or ()) == ("team",)
    assert settings.route.repeat_interval is None  # the recommended defaults, not the demo's own
