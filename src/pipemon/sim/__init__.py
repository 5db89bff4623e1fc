"""The demo fleet simulator: realistic pipelines, runs, incidents and their OpenLineage events.

Pure and deterministic for a seed and a start time; no I/O except the export helpers' files.

    fleet = build_fleet(seed=0, size=240)                    # the fleet: teams, schedules, lineage
    export("events.jsonl", days=30)                          # + events.incidents.jsonl (ground truth)
    feeder = Feeder(fleet, start=t0)                         # live: feeder.due(clock.now()) -> [event]
    run_records(fleet, t0, t0 + 86400 * 80)                  # fast path: RunRecord tuples, no JSON
    demo_config(fleet)                                       # pipemon.yaml text for the demo

Modules, in the order the data flows: `catalog` (vocabulary) → `fleet` (pipelines, lineage) →
`incidents` (what goes wrong, when) → `runs` (runs per schedule slot, fast path) → `events`
(task runs and lifecycle events) → `openlineage` / `native` (wire dicts) → `feed` (ordering, live
feed, export). `noise` is the counter-based randomness that makes every path agree.
"""
from pipemon.sim.catalog import ErrorSpec, Integration, Layer
from pipemon.sim.demo_config import demo_config
from pipemon.sim.events import EventType
from pipemon.sim.feed import DEFAULT_START, ExportSummary, Feeder, Format, export, export_incidents
from pipemon.sim.fleet import DEFAULT_SIZE, Dataset, Field, Fleet, Pipeline, build_fleet
from pipemon.sim.incidents import NO_INCIDENTS, Incident, IncidentKind, IncidentSettings
from pipemon.sim.openlineage import PRODUCER
from pipemon.sim.runs import RunRecord, RunStatus, run_records
from pipemon.sim.schedule import Cadence, Schedule

__all__ = [
    "DEFAULT_SIZE",
    "DEFAULT_START",
    "NO_INCIDENTS",
    "PRODUCER",
    "Cadence",
    "Dataset",
    "ErrorSpec",
    "EventType",
    "ExportSummary",
    "Feeder",
    "Field",
    "Fleet",
    "Format",
    "Incident",
    "IncidentKind",
    "IncidentSettings",
    "Integration",
    "Layer",
    "Pipeline",
    "RunRecord",
    "RunStatus",
    "Schedule",
    "build_fleet",
    "demo_config",
    "export",
    "export_incidents",
    "run_records",
]
