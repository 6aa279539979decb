"""Canonical emails with the domain's Unicode form: re-canonicalise users.email.

An address stored with an IDNA (xn--) domain and the same address in Unicode
were two accounts; from now on they are one canonical form. The upgrade
refuses to run, naming the rows, when two existing rows would collide: an
operator decides which account stays. The downgrade keeps the new form (the
old one is not recorded), so it changes nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import unicodedata
from collections import defaultdict
from collections.abc import Sequence

import idna
import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _canonical(value: str) -> str:
    # A copy of app.schemas.canonical_email as of this revision: a migration must not
    # change its meaning when the application's code changes later.
    value = unicodedata.normalize("NFKC", value.strip()).lower()
    local, at, domain = value.rpartition("@")
    if not at:
        return value
    try:
        domain = idna.decode(domain)
    except (idna.IDNAError, UnicodeError):
        pass
    return f"{local}@{unicodedata.normalize('NFKC', domain).lower()}"


class EmailCollision(RuntimeError):
    """Two users would share one canonical email."""


def upgrade() -> None:
    connection = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("email", sa.String))
    rows = connection.execute(sa.select(users.c.id, users.c.email).order_by(users.c.id)).all()
    by_canonical: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for user_id, email in rows:
        by_canonical[_canonical(email)].append((user_id, email))
    collisions = [group for group in by_canonical.values() if len(group) > 1]
    if collisions:
        named = "; ".join(
            " and ".join(f"users.id {user_id} ({email!r})" for user_id, email in group)
            for group in collisions
        )
        raise EmailCollision(
            f"these users would share one canonical email: {named}; merge or delete one of "
            "each, then migrate again"
        )
    for canonical, [(user_id, email)] in by_canonical.items():
        if canonical != email:
            connection.execute(
                sa.update(users).where(users.c.id == user_id).values(email=canonical)
            )


def downgrade() -> None:
    # The previous form is not recorded, and the new one is valid for the previous code.
    pass
