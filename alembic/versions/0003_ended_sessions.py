"""Ended sessions: one small record per ended session, outliving its user.

The revoked-session set is rebuilt from these records, so a deleted user's
sessions stay ended when the set is reloaded. Sessions already revoked are
recorded from their refresh tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ended_sessions",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_ended_sessions")),
    )
    op.create_index(
        op.f("ix_ended_sessions_ended_at"), "ended_sessions", ["ended_at"], unique=False
    )
    op.execute(
        "INSERT INTO ended_sessions (session_id, ended_at) "
        "SELECT session_id, MAX(revoked_at) FROM refresh_tokens "
        "WHERE revoked_at IS NOT NULL GROUP BY session_id"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ended_sessions_ended_at"), table_name="ended_sessions")
    op.drop_table("ended_sessions")
