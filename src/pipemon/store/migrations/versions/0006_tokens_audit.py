"""tokens (API tokens: name, team, role, sha256 of the secret) and audit_log (who changed what)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("team", sa.Text),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index("ix_tokens_team", "tokens", ["team"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("actor_team", sa.Text),
        sa.Column("team", sa.Text),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("address", sa.Text),
    )
    op.create_index("ix_audit_team_id", "audit_log", ["team", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_team_id", "audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_tokens_team", "tokens")
    op.drop_table("tokens")
