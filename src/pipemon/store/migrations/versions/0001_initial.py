"""pipelines, runs, events, lineage

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("namespace", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("team", sa.Text),
        sa.Column("event_team", sa.Text),
        sa.Column("integration", sa.Text),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_event_at", sa.Float, nullable=False),
    )
    op.create_index("ix_pipelines_team", "pipelines", ["team"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pipeline_id", sa.Integer, sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("parent_run_id", sa.Text),
        sa.Column("job", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("duration", sa.Float),
        sa.Column("start_seen", sa.Boolean, nullable=False),
        sa.Column("own_events", sa.Boolean, nullable=False),
        sa.Column("end_event_time", sa.Float),
        sa.Column("last_event_time", sa.Float, nullable=False),
        sa.Column("rows", sa.Float),
        sa.Column("bytes", sa.Float),
        sa.Column("metrics_time", sa.Float),
        sa.Column("metrics", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("error_type", sa.Text),
        sa.Column("log_excerpt", sa.Text),
        sa.Column("nominal_time", sa.Float),
        sa.UniqueConstraint("pipeline_id", "run_id", name="uq_runs_pipeline_run"),
    )
    op.create_index("ix_runs_pipeline_started", "runs", ["pipeline_id", "started_at"])
    op.create_index("ix_runs_run_id", "runs", ["run_id"])
    op.create_index("ix_runs_parent", "runs", ["pipeline_id", "parent_run_id"])
    op.create_index("ix_runs_running", "runs", ["status"], sqlite_where=sa.text("status = 'running'"),
                    postgresql_where=sa.text("status = 'running'"))
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(32), nullable=False, unique=True),
        sa.Column("pipeline_id", sa.Integer, sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("body", sa.LargeBinary),
    )
    op.create_table(
        "lineage",
        sa.Column("pipeline_id", sa.Integer, sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("role", sa.String(3), nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.UniqueConstraint("pipeline_id", "dataset", "role", name="uq_lineage"),
    )
    op.create_index("ix_lineage_dataset", "lineage", ["dataset", "role"])


def downgrade() -> None:
    for t in ("lineage", "events", "runs", "pipelines"):
        op.drop_table(t)
