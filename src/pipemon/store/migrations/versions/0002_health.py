"""pipeline_state, findings, rollups, checkpoints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_state",
        sa.Column("pipeline_id", sa.Integer, sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("state_since", sa.Float, nullable=False),
        sa.Column("view", sa.Text, nullable=False),
        sa.Column("health", sa.Text),
        sa.Column("detect", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_pipeline_state_state", "pipeline_state", ["state"])
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pipeline_id", sa.Integer, sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("observed", sa.Float),
        sa.Column("expected", sa.Float),
        sa.Column("lower", sa.Float),
        sa.Column("upper", sa.Float),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("direction", sa.String(8)),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("verdict", sa.String(16)),
        sa.Column("verdict_at", sa.Float),
    )
    op.create_index("ix_findings_pipeline_time", "findings", ["pipeline_id", "time"])
    op.create_table(
        "rollups",
        sa.Column("pipeline_id", sa.Integer, sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("period", sa.String(1), nullable=False),
        sa.Column("start", sa.Float, nullable=False),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("succeeded", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("duration_sum", sa.Float, nullable=False),
        sa.Column("duration_max", sa.Float, nullable=False),
        sa.Column("rows_sum", sa.Float, nullable=False),
        sa.Column("bytes_sum", sa.Float, nullable=False),
        sa.UniqueConstraint("pipeline_id", "period", "start", name="uq_rollups"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for t in ("checkpoints", "rollups", "findings", "pipeline_state"):
        op.drop_table(t)
