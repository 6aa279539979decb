"""Users: a credentials version and the last login; SQLite user ids never reused.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

`credentials_version` is bumped by every change that must win over a racing login
(password change or reset, disabling, deletion, two-factor confirmation); starting a
session checks it under the user row's lock. On SQLite, `INTEGER PRIMARY KEY` reuses the
highest id after a delete, so a deleted user's tokens would name the next registrant:
AUTOINCREMENT never hands an id out twice. That needs a table rebuild (batch mode).
PostgreSQL's serial already never reuses ids.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    # recreate="always" on SQLite: the new table is created with AUTOINCREMENT and the rows
    # are copied with their ids. Alembic's connection has foreign keys off (SQLite's
    # default), so dropping the old table cascades nothing into refresh_tokens.
    with op.batch_alter_table(
        "users",
        recreate="always" if _sqlite() else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch:
        batch.add_column(
            sa.Column(
                "credentials_version", sa.Integer(), nullable=False, server_default=sa.text("0")
            )
        )
        batch.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(
        "users",
        recreate="always" if _sqlite() else "auto",
        table_kwargs={"sqlite_autoincrement": False},
    ) as batch:
        batch.drop_column("last_login_at")
        batch.drop_column("credentials_version")
