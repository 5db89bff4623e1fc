"""runs.task_states (the scheduler's word on every task, those that never ran included) and runs.cause
(what broke, from the run's failing task)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("task_states", sa.Text))
        batch.add_column(sa.Column("cause", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cause")
        batch.drop_column("task_states")
