"""Roles and administration: users.is_active and the user_roles table.

Existing users stay active with no roles. On SQLite the users table keeps the
AUTOINCREMENT of 0004 (a batch rebuild would otherwise drop it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(
            sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    # An index PostgreSQL can use for `email LIKE 'prefix%'` whatever the database's
    # collation (the unique index serves equality only outside the C locale).
    op.create_index(
        "ix_users_email_pattern",
        "users",
        ["email"],
        unique=False,
        postgresql_ops={"email": "varchar_pattern_ops"},
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_roles_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "role", name=op.f("pk_user_roles")),
    )


def downgrade() -> None:
    op.drop_table("user_roles")
    op.drop_index("ix_users_email_pattern", table_name="users")
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("is_active")
