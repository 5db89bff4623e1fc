"""silences.team: a silence created by a team's token mutes only that team's alerts (NULL: org-wide)

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("silences") as batch:
        batch.add_column(sa.Column("team", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("silences") as batch:
        batch.drop_column("team")
