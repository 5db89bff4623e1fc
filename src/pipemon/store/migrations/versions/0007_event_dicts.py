"""event_dicts: the zstd dictionaries event bodies are compressed with (store/bodies.py). Bodies stored
before this revision stay as they are (JSON); readers tell them apart by the zstd magic.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_dicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # the id in each zstd frame
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("event_id", sa.Integer, nullable=False),  # events.id when trained
        sa.Column("dict", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_dicts")
