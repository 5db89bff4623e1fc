"""The tables (SQLAlchemy Core). Alembic migrations under migrations/versions create them.

Times are unix seconds in DOUBLE columns on both backends: one representation from the wire to the
engine, cheap to compare and index, and no timezone ambiguity. Indexes, and the query each serves:
  pipelines.key (unique)              every event resolves its pipeline by id
  pipelines.team                      `?team=` filters
  runs (pipeline_id, run_id) unique   folding an event into its run; the idempotent upsert
  runs (pipeline_id, started_at)      a pipeline's recent runs, newest first (the detail page)
  runs (run_id)                       GET /api/v1/runs/{run_id}
  runs (pipeline_id, parent_run_id)   a run's tasks
  runs (status) partial: running      open runs at start-up (running-long, ping without run id)
  events.key (unique)                 idempotency: a retried event is stored once
  (events carry no time index: retention deletes by id range, ids growing with arrival)
  lineage (pipeline_id, dataset, role) unique; lineage (dataset) to join producers with consumers
"""
from __future__ import annotations

from sqlalchemy import (Boolean, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table,
                        Text, UniqueConstraint, text)

metadata = MetaData()

pipelines = Table(
    "pipelines", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", Text, nullable=False, unique=True),
    Column("namespace", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("team", Text),                 # effective owner: config, else the producer's ownership facet
    Column("event_team", Text),           # what the events said, kept apart so config changes can re-derive
    Column("integration", Text),
    Column("first_seen", Float, nullable=False),
    Column("last_event_at", Float, nullable=False),
)
Index("ix_pipelines_team", pipelines.c.team)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("pipeline_id", Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", Text, nullable=False),
    Column("parent_run_id", Text),
    Column("job", Text),
    Column("status", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("duration", Float),
    Column("start_seen", Boolean, nullable=False),
    Column("own_events", Boolean, nullable=False),
    Column("end_event_time", Float),
    Column("last_event_time", Float, nullable=False),
    Column("rows", Float),
    Column("bytes", Float),
    Column("metrics_time", Float),
    Column("metrics", Text),              # JSON object of custom numeric metrics
    Column("error_message", Text),
    Column("error_type", Text),
    Column("log_excerpt", Text),
    Column("nominal_time", Float),
    UniqueConstraint("pipeline_id", "run_id", name="uq_runs_pipeline_run"),
)
Index("ix_runs_pipeline_started", runs.c.pipeline_id, runs.c.started_at)
Index("ix_runs_run_id", runs.c.run_id)
Index("ix_runs_parent", runs.c.pipeline_id, runs.c.parent_run_id)
Index("ix_runs_running", runs.c.status, sqlite_where=text("status = 'running'"),
      postgresql_where=text("status = 'running'"))

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(32), nullable=False, unique=True),
    Column("pipeline_id", Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", Text, nullable=False),
    Column("type", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("time", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("body", LargeBinary),          # the event as received (raw facets kept)
)

lineage = Table(
    "lineage", metadata,
    Column("pipeline_id", Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
    Column("dataset", Text, nullable=False),
    Column("role", String(3), nullable=False),  # "in" | "out"
    Column("last_seen", Float, nullable=False),
    UniqueConstraint("pipeline_id", "dataset", "role", name="uq_lineage"),
)
Index("ix_lineage_dataset", lineage.c.dataset, lineage.c.role)
