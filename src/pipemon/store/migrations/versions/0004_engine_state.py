"""engine_state apart from pipeline_state; a covering index for the fleet summary

The engine's JSON state (~5 KB a pipeline, rewritten at every checkpoint) made the rows the API reads wide:
the summary of 10,000 pipelines read 10,000 overflow pages, and PostgreSQL's table bloated (query
benchmark). It moves to a table of its own.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_state",
        sa.Column("pipeline_id", sa.Integer, sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("health", sa.Text, nullable=False),
        sa.Column("detect", sa.Text),
    )
    op.execute("INSERT INTO engine_state (pipeline_id, health, detect) "
               "SELECT pipeline_id, health, detect FROM pipeline_state WHERE health IS NOT NULL")
    with op.batch_alter_table("pipeline_state") as batch:
        batch.drop_column("health")
        batch.drop_column("detect")
    op.create_index("ix_pipeline_state_cover", "pipeline_state", ["pipeline_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_pipeline_state_cover", "pipeline_state")
    with op.batch_alter_table("pipeline_state") as batch:
        batch.add_column(sa.Column("health", sa.Text))
        batch.add_column(sa.Column("detect", sa.Text))
    op.drop_table("engine_state")
