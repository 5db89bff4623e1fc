"""outbox_claims: several dispatchers share the outbox. A dispatcher claims a due row for a lease
(`claimed_by`, `claimed_until`); an expired lease (its dispatcher died mid-send) makes the row claimable
again. The partial index serves the claim's order check: the earliest pending row of a (receiver, group).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(40)))
        batch.add_column(sa.Column("claimed_until", sa.Float))
    op.create_index("ix_notifications_pending_key", "notifications", ["receiver", "group_key", "id"],
                    sqlite_where=sa.text("status = 'pending'"),
                    postgresql_where=sa.text("status = 'pending'"))


def downgrade() -> None:
    op.drop_index("ix_notifications_pending_key", "notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
