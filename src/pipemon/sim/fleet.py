"""The simulated fleet: pipelines, their owners, schedules, datasets and lineage.

The fleet is a layered DAG, `RAW → STAGING → MART → SERVING`: each pipeline reads the primary
output of one to three pipelines in lower layers (usually the layer just below, often another
team's), so lineage is acyclic by construction and several hops deep. Pipelines are numbered in
that order, so `upstream` indices are always smaller than the pipeline's own: one pass in index
order is a topological walk. Everything is drawn from one seeded generator: same seed, same fleet.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

import numpy as np

from pipemon.sim.catalog import (
    AIRFLOW_TASKS,
    DBT_MODEL_PATTERNS,
    KEY_FIELDS,
    ML_SERVING_PATTERNS,
    NAME_PATTERNS,
    NAME_VARIANTS,
    OPTIONAL_FIELDS,
    TEAMS,
    Integration,
    Layer,
    Team,
)
from pipemon.sim.schedule import DAY, Cadence, Schedule

DEFAULT_SIZE = 240
T = TypeVar("T")

LAYERS = tuple(Layer)
_LAYER_SHARE = (0.30, 0.30, 0.25, 0.15)
_INTEGRATION_WEIGHTS: dict[Layer, dict[Integration, float]] = {
    Layer.RAW: {Integration.AIRFLOW: 0.40, Integration.SPARK: 0.25, Integration.CRON: 0.35},
    Layer.STAGING: {Integration.DBT: 0.50, Integration.SPARK: 0.25, Integration.AIRFLOW: 0.25},
    Layer.MART: {Integration.DBT: 0.60, Integration.AIRFLOW: 0.25, Integration.SPARK: 0.15},
    Layer.SERVING: {Integration.AIRFLOW: 0.45, Integration.SPARK: 0.30, Integration.CRON: 0.25},
}
# (cadence, weight, candidate UTC hours, candidate minutes); layers run later in the night as they
# go up, so a daily pipeline's upstream has usually finished before it is due.
_SCHEDULES: dict[Layer, tuple[tuple[Cadence, float, tuple[int, ...], range], ...]] = {
    Layer.RAW: ((Cadence.EVERY_15_MIN, 0.20, (), range(15)),
                (Cadence.HOURLY, 0.40, (), range(0, 60, 5)),
                (Cadence.DAILY, 0.40, (0, 1), range(0, 60, 5))),
    Layer.STAGING: ((Cadence.HOURLY, 0.35, (), range(15, 50, 5)),
                    (Cadence.DAILY, 0.55, (2, 3), range(0, 60, 5)),
                    (Cadence.TWICE_DAILY, 0.10, (2, 14), range(0, 60, 15))),
    Layer.MART: ((Cadence.HOURLY, 0.15, (), range(30, 60, 5)),
                 (Cadence.DAILY, 0.65, (3, 4, 5), range(0, 60, 5)),
                 (Cadence.WEEKDAYS, 0.20, (5,), range(0, 60, 10))),
    Layer.SERVING: ((Cadence.DAILY, 0.60, (5, 6, 7), range(0, 60, 5)),
                    (Cadence.WEEKDAYS, 0.30, (6, 7, 8), range(0, 60, 15)),
                    (Cadence.TWICE_DAILY, 0.10, (6, 18), range(0, 60, 30))),
}
_TYPICAL_DAILY_DURATION_S = {Integration.SPARK: 1500, Integration.DBT: 480, Integration.AIRFLOW: 720,
                             Integration.CRON: 180}
_ROWS_PER_DAY = {Layer.RAW: 4e6, Layer.STAGING: 2e6, Layer.MART: 3e5, Layer.SERVING: 5e4}
_JITTER_S = {Integration.AIRFLOW: 20.0, Integration.DBT: 30.0, Integration.SPARK: 45.0, Integration.CRON: 1.0}
# How long after an upstream finishes a waiting run notices (sensor poke, trigger, marker-file poll).
_POLL_S = {Integration.AIRFLOW: 60.0, Integration.DBT: 30.0, Integration.SPARK: 120.0,
           Integration.CRON: 300.0}


@dataclass(frozen=True)
class Field:
    name: str
    type: str


@dataclass(frozen=True)
class Dataset:
    namespace: str
    name: str
    fields: tuple[Field, ...] = ()


@dataclass(frozen=True)
class Behaviour:
    """How a pipeline's runs vary: the knobs `runs.py` turns into durations and row counts."""

    duration_s: float  # median run time at base volume
    duration_sigma: float  # log-normal noise on the duration
    rows: float  # median rows per run on a weekday at the simulation's start
    rows_sigma: float
    row_bytes: float
    weekend: float  # volume factor on Saturday and Sunday
    monday: float  # Monday catch-up factor of daily batches
    diurnal: float  # amplitude of the time-of-day curve (sub-daily schedules only)
    growth_per_day: float  # slow trend, as a fraction per day
    jitter_s: float  # mean scheduler delay before a run starts
    poll_s: float  # delay between an upstream finishing and this run noticing
    task_shares: tuple[float, ...]  # fraction of the run each task takes, in order


@dataclass(frozen=True)
class Pipeline:
    index: int
    namespace: str
    name: str
    team: str
    integration: Integration
    layer: Layer
    schedule: Schedule
    tier: int  # 1 = business-critical … 3 = best effort
    tags: tuple[tuple[str, str], ...]
    inputs: tuple[Dataset, ...]
    outputs: tuple[Dataset, ...]  # the first is the primary one: the one downstream pipelines read
    upstream: tuple[int, ...]  # indices of the pipelines producing the inputs, all < index
    tasks: tuple[str, ...]  # Airflow task ids or dbt models, run in order; empty for Spark and cron
    behaviour: Behaviour = field(repr=False)

    @property
    def id(self) -> str:
        """pipemon's pipeline id, `namespace/name` (the namespace itself may hold `://` and `/`)."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, eq=False)
class Fleet:
    seed: int
    pipelines: tuple[Pipeline, ...]  # topological order

    def __len__(self) -> int:
        return len(self.pipelines)

    @cached_property
    def by_id(self) -> dict[str, Pipeline]:
        return {p.id: p for p in self.pipelines}

    @cached_property
    def teams(self) -> tuple[str, ...]:
        return tuple(sorted({p.team for p in self.pipelines}))

    @cached_property
    def downstream(self) -> tuple[tuple[int, ...], ...]:
        children: list[list[int]] = [[] for _ in self.pipelines]
        for p in self.pipelines:
            for u in p.upstream:
                children[u].append(p.index)
        return tuple(tuple(c) for c in children)

    def descendants(self, indices: Iterable[int]) -> tuple[int, ...]:
        """Every pipeline downstream of `indices`, transitively, excluding them."""
        start = set(indices)
        seen: set[int] = set()
        stack = list(start)
        while stack:
            for child in self.downstream[stack.pop()]:
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return tuple(sorted(seen - start))

    def runs_per_day(self) -> float:
        """Scheduled pipeline runs per simulated day (tasks not counted): sizes a fast-path load."""
        return sum(p.schedule.runs_per_day for p in self.pipelines)


def build_fleet(seed: int = 0, size: int = DEFAULT_SIZE) -> Fleet:
    """A deterministic fleet of `size` pipelines (≥ 8) owned by seven teams."""
    if size < 8:
        raise ValueError("a fleet needs at least 8 pipelines to fill its layers")
    builder = _Builder(np.random.default_rng([seed, 0xF1EE7]))
    counts = [round(size * share) for share in _LAYER_SHARE[:-1]]
    counts.append(size - sum(counts))
    for layer, count in zip(LAYERS, counts, strict=True):
        for _ in range(count):
            builder.add(layer)
    return Fleet(seed, tuple(builder.pipelines))


def compatible(up: Schedule, down: Schedule) -> bool:
    """Can `down` sensibly wait for `up`'s latest slot at or before its own? No finer cadence
    downstream (an hourly job behind a daily one would stall all day), and daily jobs in order."""
    if up.period_ms > down.period_ms:
        return False
    return not (up.is_daily and down.is_daily) or up.first_of_day_ms < down.first_of_day_ms


class _Builder:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.pipelines: list[Pipeline] = []
        self.names: set[str] = set()
        self.by_layer: dict[Layer, list[Pipeline]] = {layer: [] for layer in LAYERS}
        self.by_layer_team: dict[tuple[Layer, str], list[Pipeline]] = {}

    def choice(self, options: Sequence[T], weights: Iterable[float] | None = None) -> T:
        if weights is None:
            return options[int(self.rng.integers(len(options)))]
        w = np.asarray(list(weights), float)
        return options[int(self.rng.choice(len(options), p=w / w.sum()))]

    def add(self, layer: Layer) -> None:
        rng = self.rng
        layer_no = LAYERS.index(layer)
        team: Team = self.choice(TEAMS, (t.layer_share[layer_no] for t in TEAMS))
        weights = _INTEGRATION_WEIGHTS[layer]
        integration: Integration = self.choice(list(weights), weights.values())
        schedule = self.schedule(layer)
        entity = self.choice(team.entities)
        ml_serving = team.name == "ml" and layer is Layer.SERVING
        patterns = ML_SERVING_PATTERNS if ml_serving else NAME_PATTERNS[layer]
        name = self.unique_name(self.choice(patterns).format(e=entity))
        upstream = self.pick_upstream(layer, team.name, schedule)

        if layer is Layer.RAW:
            source_ns, template = self.choice(team.sources)
            inputs: tuple[Dataset, ...] = (Dataset(source_ns, template.format(e=entity)),)
        else:
            inputs = tuple(self.pipelines[u].outputs[0] for u in upstream)
        outputs: tuple[Dataset, ...] = (Dataset(*_output_location(layer, integration, team.name, name),
                                                 self.fields()),)
        if rng.random() < 0.15:  # some also write the rows they reject
            rejects = Dataset("snowflake://acme-prod", f"audit.rejects.{name}", (Field("id", "BIGINT"),))
            outputs = (*outputs, rejects)

        tasks = self.tasks(integration, entity)
        pipeline = Pipeline(
            index=len(self.pipelines),
            namespace=_namespace(integration, team),
            name=name,
            team=team.name,
            integration=integration,
            layer=layer,
            schedule=schedule,
            tier=int(self.choice((1, 2, 3), team.tier_weights)),
            tags=(("domain", team.domain), ("layer", layer.value), ("pii", str(rng.random() < 0.25).lower())),
            inputs=inputs,
            outputs=outputs,
            upstream=upstream,
            tasks=tasks,
            behaviour=self.behaviour(layer, integration, schedule, team.name, len(tasks)),
        )
        self.pipelines.append(pipeline)
        self.by_layer[layer].append(pipeline)
        self.by_layer_team.setdefault((layer, team.name), []).append(pipeline)

    def schedule(self, layer: Layer) -> Schedule:
        options = _SCHEDULES[layer]
        cadence, _, hours, minutes = self.choice(options, (o[1] for o in options))
        minute = int(self.choice(minutes))
        if cadence in (Cadence.DAILY, Cadence.WEEKDAYS):
            hours = (int(self.choice(hours)),)
        return Schedule(cadence, minute, hours)

    def unique_name(self, base: str) -> str:
        # Globally unique, not just per namespace: output tables are named after their pipeline.
        candidates = [base + v for v in NAME_VARIANTS]
        for candidate in candidates:
            if candidate not in self.names:
                break
        else:
            n = 2
            while (candidate := f"{base}_{n}") in self.names:
                n += 1
        self.names.add(candidate)
        return candidate

    def pick_upstream(self, layer: Layer, team: str, schedule: Schedule) -> tuple[int, ...]:
        layer_no = LAYERS.index(layer)
        if layer_no == 0:
            return ()
        rng = self.rng
        chosen: list[int] = []
        for _ in range(int(self.choice((1, 2, 3), (0.5, 0.35, 0.15)))):
            for _attempt in range(12):
                skip_layers = layer_no > 1 and rng.random() >= 0.8  # now and then read further down
                src = LAYERS[int(rng.integers(layer_no - 1)) if skip_layers else layer_no - 1]
                same_team = rng.random() < 0.55  # the rest may be anyone's: lineage crosses teams
                pool = self.by_layer_team.get((src, team), []) if same_team else self.by_layer[src]
                if not pool:
                    continue
                candidate = self.choice(pool)
                if candidate.index not in chosen and compatible(candidate.schedule, schedule):
                    chosen.append(candidate.index)
                    break
        if not chosen:  # rare: scan every lower pipeline for one this schedule can wait on
            lower = [p for lay in LAYERS[:layer_no] for p in self.by_layer[lay]]
            for i in rng.permutation(len(lower)):
                if compatible(lower[i].schedule, schedule):
                    chosen.append(lower[i].index)
                    break
        return tuple(sorted(chosen))

    def fields(self) -> tuple[Field, ...]:
        picked = sorted(self.rng.choice(len(OPTIONAL_FIELDS), int(self.rng.integers(2, 9)), replace=False))
        return tuple(Field(n, t) for n, t in KEY_FIELDS + tuple(OPTIONAL_FIELDS[i] for i in picked))

    def tasks(self, integration: Integration, entity: str) -> tuple[str, ...]:
        rng = self.rng
        if integration is Integration.AIRFLOW:
            optional = [t for t in AIRFLOW_TASKS if t not in ("extract", "load")]
            keep = set(rng.choice(optional, int(rng.integers(0, len(optional) + 1)), replace=False))
            return tuple(t for t in AIRFLOW_TASKS if t in keep or t in ("extract", "load"))
        if integration is Integration.DBT:
            n = int(rng.integers(2, 5))
            return tuple(pattern.format(e=entity) for pattern in DBT_MODEL_PATTERNS[:n])
        return ()

    def behaviour(self, layer: Layer, integration: Integration, schedule: Schedule, team: str,
                  n_tasks: int) -> Behaviour:
        rng = self.rng
        if schedule.cadence is Cadence.EVERY_15_MIN:
            median, low, high = 45.0, 5.0, 300.0
        elif schedule.cadence is Cadence.HOURLY:
            median, low, high = 240.0, 20.0, 1500.0
        else:
            median, low, high = _TYPICAL_DAILY_DURATION_S[integration], 30.0, 3 * 3600.0
        duration = float(np.clip(median * rng.lognormal(0.0, 0.7), max(low, 20.0 * n_tasks), high))
        rows = _ROWS_PER_DAY[layer] * rng.lognormal(0.0, 1.2) * min(1.0, schedule.period_ms / DAY)
        always_on = team == "platform" and layer is Layer.RAW  # logs and events flow all week
        return Behaviour(
            duration_s=duration,
            duration_sigma=float(rng.uniform(0.08, 0.3)),
            rows=max(10.0, float(rows)),
            rows_sigma=float(rng.uniform(0.03, 0.12)),
            row_bytes=float(np.clip(250.0 * rng.lognormal(0.0, 0.8), 40.0, 5000.0)),
            weekend=float(rng.uniform(0.8, 1.0) if always_on else rng.uniform(0.35, 0.85)),
            monday=float(rng.uniform(1.1, 1.45)) if schedule.is_daily else 1.0,
            diurnal=0.0 if schedule.is_daily else float(rng.uniform(0.2, 0.6)),
            growth_per_day=float(np.clip(rng.normal(0.002, 0.002), -0.002, 0.01)),
            jitter_s=_JITTER_S[integration],
            poll_s=_POLL_S[integration],
            task_shares=tuple(float(s) for s in rng.dirichlet([3.0] * n_tasks)) if n_tasks else (),
        )


def _namespace(integration: Integration, team: Team) -> str:
    match integration:
        case Integration.AIRFLOW:
            return f"airflow://prod-{team.name}"
        case Integration.DBT:
            return f"dbt://{team.dbt_project}"
        case Integration.SPARK:
            return "spark://ml-cluster" if team.name == "ml" else "spark://lake"
        case Integration.CRON:
            return f"cron://{team.cron_host}"


def _output_location(layer: Layer, integration: Integration, team: str, name: str) -> tuple[str, str]:
    lake = integration is Integration.SPARK
    match layer:
        case Layer.RAW:
            return "s3://acme-lake", f"raw/{team}/{name}"
        case Layer.STAGING:
            return ("s3://acme-lake", f"staging/{team}/{name}") if lake else (
                "snowflake://acme-prod", f"analytics.staging.{name}")
        case Layer.MART:
            return ("s3://acme-lake", f"curated/{team}/{name}") if lake else (
                "snowflake://acme-prod", f"analytics.{team}.{name}")
        case Layer.SERVING:
            if team == "ml":
                return "s3://acme-ml", f"features/{name}"
            return "snowflake://acme-prod", f"reporting.{team}.{name}"
