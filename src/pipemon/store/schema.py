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
  pipeline_state.state                `?state=` filters
  pipeline_state (pipeline_id, state) the fleet summary: an index-only read of every pipeline's state
  findings (pipeline_id, time)        a pipeline's anomaly history, newest first
  rollups (pipeline_id, period, start) unique: long windows read from hourly/daily rows, never raw runs
  alerts (fingerprint) unique where not resolved: one open alert per fingerprint, enforced by the database
  alerts (team, state), alerts (started_at)        the alert list and the noise report
  notifications.key unique            the outbox never holds the same notification twice
  notifications (status, next_attempt_at)          the deliverer's due work
  notifications (created_at)          the noise report and the delivery log
"""
from __future__ import annotations

from sqlalchemy import (Boolean, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String,
                        Table, Text, UniqueConstraint, text)

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
    Column("task_states", Text),          # JSON object: task id -> the scheduler's state (0005)
    Column("cause", Text),                # what broke, from the run's failing task (0005)
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
    Column("body", LargeBinary),          # the event as received (raw facets kept), compressed: bodies.py
)

# The dictionaries event bodies are compressed with (0007), keyed by the id written in each zstd frame.
event_dicts = Table(
    "event_dicts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("created_at", Float, nullable=False),
    Column("event_id", Integer, nullable=False),  # events.id when it was trained
    Column("dict", LargeBinary, nullable=False),
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

# One row per pipeline: the health the API reads, written whenever it changes.
pipeline_state = Table(
    "pipeline_state", metadata,
    Column("pipeline_id", Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("state_since", Float, nullable=False),
    Column("view", Text, nullable=False),         # JSON: metrics, schedule, open conditions, last run
    Column("updated_at", Float, nullable=False),
)
Index("ix_pipeline_state_state", pipeline_state.c.state)
# The fleet summary reads (pipeline, state) for every pipeline: from this index alone, not the wide rows.
Index("ix_pipeline_state_cover", pipeline_state.c.pipeline_id, pipeline_state.c.state)

# The engine's state per pipeline (health windows and detector baselines, JSON), written at checkpoints
# (see writer/health.py). Apart from pipeline_state so the rows the API reads stay narrow.
engine_state = Table(
    "engine_state", metadata,
    Column("pipeline_id", Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), primary_key=True),
    Column("health", Text, nullable=False),
    Column("detect", Text),
)

findings = Table(
    "findings", metadata,
    Column("id", Integer, primary_key=True),
    Column("pipeline_id", Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("metric", Text, nullable=False),
    Column("time", Float, nullable=False),
    Column("run_id", Text),
    Column("observed", Float),
    Column("expected", Float),
    Column("lower", Float),
    Column("upper", Float),
    Column("score", Float, nullable=False),
    Column("direction", String(8)),
    Column("explanation", Text, nullable=False),
    Column("verdict", String(16)),                # an operator's feedback: expected | incident
    Column("verdict_at", Float),
)
Index("ix_findings_pipeline_time", findings.c.pipeline_id, findings.c.time)

rollups = Table(
    "rollups", metadata,
    Column("pipeline_id", Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
    Column("period", String(1), nullable=False),  # "h" | "d"
    Column("start", Float, nullable=False),
    Column("runs", Integer, nullable=False),
    Column("succeeded", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("duration_sum", Float, nullable=False),
    Column("duration_max", Float, nullable=False),
    Column("rows_sum", Float, nullable=False),
    Column("bytes_sum", Float, nullable=False),
    UniqueConstraint("pipeline_id", "period", "start", name="uq_rollups"),
)

checkpoints = Table(
    "checkpoints", metadata,
    Column("name", String(32), primary_key=True),
    Column("event_id", Integer, nullable=False),  # every event up to here is reflected in the checkpoint
    Column("time", Float, nullable=False),
)

alerts = Table(
    "alerts", metadata,
    Column("id", Integer, primary_key=True),
    Column("fingerprint", String(32), nullable=False),
    Column("pipeline", Text, nullable=False),
    Column("team", Text, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("resolved_at", Float),
    Column("acked_at", Float),
    Column("occurrences", Integer, nullable=False),
    Column("body", Text, nullable=False),         # JSON: the whole alert (labels, description, root cause …)
)
Index("uq_alerts_open_fingerprint", alerts.c.fingerprint, unique=True,
      sqlite_where=text("state <> 'resolved'"), postgresql_where=text("state <> 'resolved'"))
Index("ix_alerts_team_state", alerts.c.team, alerts.c.state)
Index("ix_alerts_started", alerts.c.started_at)

silences = Table(
    "silences", metadata,
    Column("id", Integer, primary_key=True),
    Column("matchers", Text, nullable=False),      # JSON list of matcher strings
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("team", Text),                          # created by a team's token: mutes that team only (0009)
)

notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(32), nullable=False, unique=True),
    Column("receiver", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("group_key", Text, nullable=False),
    Column("teams", Text, nullable=False),         # JSON list: the teams whose alerts it carries
    Column("fingerprints", Text, nullable=False),  # JSON list
    Column("body", Text, nullable=False),          # JSON: the Notification
    Column("status", String(12), nullable=False),  # pending | sent | failed | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
)
Index("ix_notifications_due", notifications.c.status, notifications.c.next_attempt_at)
Index("ix_notifications_created", notifications.c.created_at)

engine_blobs = Table(
    "engine_blobs", metadata,
    Column("name", String(32), primary_key=True),  # e.g. "dispatch": alert groups, timers, escalations
    Column("body", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)
