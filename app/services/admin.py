"""Administration use cases: list, read, update and delete users (the caller is an admin)."""

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, NotFound, ValidationFailed
from app.models import User, UserRole
from app.observability.audit import Audit, Event
from app.services import accounts, two_factor
from app.stores.revocations import RevokedSessions

ADMIN_ROLE = "admin"
MAX_USER_ID = 2**31 - 1  # the integer column's range
MAX_CURSOR_LENGTH = 64


@dataclass(frozen=True, slots=True)
class ManagedUser:
    user: User
    roles: list[str]


@dataclass(frozen=True, slots=True)
class UserPage:
    items: list[ManagedUser]
    next_cursor: str | None


def encode_cursor(user_id: int) -> str:
    """Opaque to clients, unsigned: any well-formed cursor just names a position."""
    return base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The user id a cursor names; ValidationFailed (422) for anything else."""
    invalid = ValidationFailed([{"loc": ["query", "cursor"], "msg": "is not a valid cursor"}])
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
        raise invalid
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise invalid from None
    if not text.isdigit() or len(text) > len(str(MAX_USER_ID)) or int(text) > MAX_USER_ID:
        raise invalid
    # Only the one encoding we hand out (no padding, no other spelling of the same bytes).
    if encode_cursor(int(text)) != cursor:
        raise invalid
    return int(text)


def _like_prefix(prefix: str) -> str:
    # LIKE's wildcards in the prefix match themselves.
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def _roles_by_user(db: AsyncSession, user_ids: Sequence[int]) -> dict[int, list[str]]:
    roles: dict[int, list[str]] = {user_id: [] for user_id in user_ids}
    if user_ids:
        rows = await db.execute(
            select(UserRole.user_id, UserRole.role).where(UserRole.user_id.in_(user_ids))
        )
        for user_id, role in rows:
            roles[user_id].append(role)
    return {user_id: sorted(found) for user_id, found in roles.items()}


async def list_users(
    db: AsyncSession, *, email_prefix: str | None, limit: int, cursor: str | None
) -> UserPage:
    """Users ordered by id, after the cursor's position (keyset: stable under inserts)."""
    after = decode_cursor(cursor) if cursor is not None else 0
    query = select(User).where(User.id > after).order_by(User.id).limit(limit + 1)
    if email_prefix:
        # A constant prefix pattern: PostgreSQL answers it from ix_users_email_pattern.
        query = query.where(User.email.like(_like_prefix(email_prefix), escape="\\"))
    users = list((await db.scalars(query)).all())
    more = len(users) > limit
    users = users[:limit]
    roles = await _roles_by_user(db, [user.id for user in users])
    return UserPage(
        items=[ManagedUser(user, roles[user.id]) for user in users],
        next_cursor=encode_cursor(users[-1].id) if more else None,
    )


async def _find(db: AsyncSession, user_id: int, *, for_update: bool = False) -> User:
    query = select(User).where(User.id == user_id)
    if for_update:
        # Serialises changes to one user (and a login racing them, which locks it too).
        query = query.with_for_update()
    user = (await db.scalars(query)).one_or_none()
    if user is None:
        raise NotFound("no such user")
    return user


async def get_user(db: AsyncSession, *, user_id: int) -> ManagedUser:
    user = await _find(db, user_id)
    return ManagedUser(user, await accounts.roles_of(db, user_id=user.id))


async def update_user(
    db: AsyncSession,
    *,
    actor: User,
    user_id: int,
    is_active: bool | None,
    roles: Sequence[str] | None,
    revoked: RevokedSessions,
    now: datetime,
    audit: Audit,
    two_factor_enabled: bool | None = None,
) -> ManagedUser:
    """Change a user's `is_active` and roles; disabling ends every session at once.

    An admin cannot disable itself or drop its own admin role: that could lock every
    administrator out (Conflict).
    """
    user = await _find(db, user_id, for_update=True)
    if user.id == actor.id:
        if is_active is False:
            raise Conflict("an administrator cannot disable itself")
        if roles is not None and ADMIN_ROLE not in roles:
            raise Conflict("an administrator cannot remove its own admin role")
    current_roles = await accounts.roles_of(db, user_id=user.id)
    if roles is not None and sorted(set(roles)) != current_roles:
        await accounts.set_roles(db, user_id=user.id, roles=roles)
        audit.record(
            Event.ROLES_CHANGED,
            actor_id=actor.id,
            target_user_id=user.id,
            roles=",".join(sorted(set(roles))),
            previous_roles=",".join(current_roles),
        )
        current_roles = sorted(set(roles))
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        await db.flush()
        if not is_active:
            ended = await accounts.end_every_session(db, user=user, revoked=revoked, now=now)
            audit.record(
                Event.USER_DISABLED,
                actor_id=actor.id,
                target_user_id=user.id,
                sessions_ended=len(ended),
            )
        else:
            audit.record(Event.USER_ENABLED, actor_id=actor.id, target_user_id=user.id)
    if two_factor_enabled is False:
        # Only off: switching it on takes the user's own device.
        await two_factor.switch_off(db, user=user, audit=audit, actor_id=actor.id)
    return ManagedUser(user, current_roles)


async def delete_user(
    db: AsyncSession,
    *,
    actor: User,
    user_id: int,
    revoked: RevokedSessions,
    now: datetime,
    audit: Audit,
) -> None:
    """DELETE /admin/users/{id}: as DELETE /account/me; an admin cannot delete itself."""
    if user_id == actor.id:
        raise Conflict("an administrator cannot delete itself")
    user = await _find(db, user_id, for_update=True)
    await accounts.delete_user(
        db, user=user, revoked=revoked, now=now, audit=audit, actor_id=actor.id
    )
