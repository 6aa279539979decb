"""Account use cases: register, authenticate, change password, create, disable or delete a user."""

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.db import release_before_slow_work
from app.errors import (
    AccountDisabled,
    EmailNotVerified,
    EmailTaken,
    InvalidCredentials,
    Throttled,
    TwoFactorRequired,
    WeakPassword,
    WrongPassword,
)
from app.models import AccountLink, MailRequest, User, UserRole
from app.observability.audit import Audit, Event
from app.security.passwords import PasswordHasher, password_problem
from app.services import sessions
from app.stores.revocations import RevokedSessions
from app.stores.throttle import Throttle


async def _by_email(db: AsyncSession, email: str) -> User | None:
    return (await db.execute(select(User).where(User.email == email))).scalar_one_or_none()


def check_new_password(password: str, *, field: str, min_length: int, email: str) -> None:
    problem = password_problem(password, min_length=min_length, email=email)
    if problem is not None:
        raise WeakPassword(field, problem)


async def invalidate_credentials(db: AsyncSession, user: User) -> None:
    """Make every login still in flight for this user fail: call it in the transaction of
    any change that must win over a racing login (password change or reset, disabling,
    deletion, two-factor confirmation), before that transaction ends the user's sessions.

    Why: a login reads the user, then spends tens of milliseconds in argon2 with no
    transaction open. A change that commits meanwhile ends every session that exists, but
    the login's session does not exist yet, and it would be created afterwards from a
    password check that is no longer true. So every such change bumps
    `users.credentials_version` here, at once, with an UPDATE that takes the user row's
    lock until the change commits; and starting a session (`sessions.start`) is an UPDATE of
    the same row conditional on the version the login read. The two serialise on the row
    lock: a login whose UPDATE waits for the change sees the new version once the change
    commits and gives up; a change that waits for a login's commit ends the session that
    login created. A plain conditional INSERT would not do: under READ COMMITTED
    (PostgreSQL) it cannot see the uncommitted bump, and it would not wait for it. On
    SQLite every write transaction is BEGIN IMMEDIATE, one at a time, with the same effect.
    """
    bumped = await db.execute(
        update(User)
        .where(User.id == user.id)
        .values(credentials_version=User.credentials_version + 1)
        .returning(User.credentials_version)
        .execution_options(synchronize_session=False)
    )
    # Known to the identity map as the row's value, so no second UPDATE at flush.
    set_committed_value(user, "credentials_version", bumped.scalar_one())


async def register(
    db: AsyncSession,
    *,
    hasher: PasswordHasher,
    email: str,
    password: str,
    min_length: int,
    now: datetime,
    first_name: str | None = None,
    last_name: str | None = None,
    phone_number: str | None = None,
) -> User:
    """Create an account; the email is already in canonical form. EmailTaken on a duplicate."""
    check_new_password(password, field="password", min_length=min_length, email=email)
    # Hash before touching the database: no transaction is open while argon2 runs.
    password_hash = await hasher.hash(password)
    if await _by_email(db, email) is not None:
        raise EmailTaken()
    user = User(
        email=email,
        password_hash=password_hash,
        first_name=first_name,
        last_name=last_name,
        phone_number=phone_number,
        created_at=now,
    )
    db.add(user)
    try:
        # Ask the database now: a concurrent registration may have won the unique index.
        async with db.begin_nested():
            await db.flush()
    except IntegrityError:
        raise EmailTaken() from None
    return user


class SecondFactor(Protocol):
    """What a login presents beyond the password (app.services.two_factor.PresentedFactor)."""

    @property
    def presented(self) -> bool: ...

    async def verify(self, db: AsyncSession, user: User) -> bool: ...


async def authenticate(
    db: AsyncSession,
    *,
    hasher: PasswordHasher,
    throttle: Throttle,
    email: str,
    password: str,
    audit: Audit,
    require_verified: bool = False,
    second_factor: SecondFactor | None = None,
) -> User:
    """The user these credentials belong to, or InvalidCredentials (unknown emails alike).

    Checks in the contract's order: throttle, password, second factor, disabled, (unverified).
    A failed attempt is reserved before the password is verified, so a throttled
    guesser burns no CPU; only the verdict counts: a wrong password or code keeps it,
    and an error (a 5xx), a 401 two-factor-required or a 403 counts nothing. The count is
    cleared only once tokens are issued (`login_succeeded`), never here: a right password
    alone must not reset the count of guesses at the second factor.
    """
    try:
        async with throttle.attempt(email) as attempt:
            user = await _by_email(db, email)
            await release_before_slow_work(db)
            valid, new_hash = await hasher.verify(password, user.password_hash if user else None)
            if user is None or not valid:
                # Said in the log only; the client gets the same answer either way.
                reason = "unknown email" if user is None else "wrong password"
                audit.record(Event.LOGIN_FAILED, user_id=user.id if user else None, reason=reason)
                await attempt.failed()
                raise InvalidCredentials()
            if user.two_factor_enabled:
                if second_factor is None or not second_factor.presented:
                    # The right password: the client asks for the code next. No verdict.
                    audit.record(Event.LOGIN_FAILED, user_id=user.id, reason="two-factor required")
                    raise TwoFactorRequired()
                if not await second_factor.verify(db, user):
                    audit.record(Event.TWO_FACTOR_FAILED, user_id=user.id, reason="wrong code")
                    await attempt.failed()
                    raise InvalidCredentials()
            if not user.is_active:
                # Said only after the right password, so it reveals nothing to a guesser; a
                # 403 is no verdict on the password: it neither counts nor clears the count.
                audit.record(Event.LOGIN_FAILED, user_id=user.id, reason="account disabled")
                raise AccountDisabled()
            if require_verified and not user.email_verified:
                # REQUIRE_VERIFIED_EMAIL: likewise said only after the right password.
                audit.record(Event.LOGIN_FAILED, user_id=user.id, reason="email not verified")
                raise EmailNotVerified()
    except Throttled:
        throttled = await _by_email(db, email)
        audit.record(Event.LOGIN_THROTTLED, user_id=throttled.id if throttled else None)
        raise
    if new_hash is not None:
        # The stored hash used other argon2 parameters: upgrade it now that we know the password.
        user.password_hash = new_hash
    return user


async def login_succeeded(throttle: Throttle, email: str) -> None:
    """Tokens were issued: the account's count of failed attempts starts again."""
    await throttle.clear(email)


async def change_password(
    db: AsyncSession,
    *,
    hasher: PasswordHasher,
    throttle: Throttle,
    user: User,
    current_password: str,
    new_password: str,
    min_length: int,
    audit: Audit,
) -> None:
    """Replace the password after checking the current one; ending sessions is the caller's.

    The new password's rules come first, so a 422 says nothing about the current password;
    a guess at the current password is a failed attempt of the account, counted with the
    logins (one stolen access token must not allow unlimited silent guesses).
    """
    check_new_password(new_password, field="new_password", min_length=min_length, email=user.email)
    await release_before_slow_work(db)
    try:
        # Only the verdict counts: a 5xx (database, argon2 queue) counts nothing.
        async with throttle.attempt(user.email) as attempt:
            valid, _ = await hasher.verify(current_password, user.password_hash)
            if not valid:
                audit.record(Event.PASSWORD_CHANGE_FAILED, user_id=user.id, reason="wrong password")
                await attempt.failed()
                raise WrongPassword()
            await attempt.succeeded()
    except Throttled:
        audit.record(Event.LOGIN_THROTTLED, user_id=user.id)
        raise
    new_hash = await hasher.hash(new_password)
    await invalidate_credentials(db, user)
    user.password_hash = new_hash
    audit.record(Event.PASSWORD_CHANGED, user_id=user.id)


async def set_user(
    db: AsyncSession,
    *,
    hasher: PasswordHasher,
    email: str,
    password: str,
    now: datetime,
    first_name: str | None = None,
    last_name: str | None = None,
    phone_number: str | None = None,
    roles: Iterable[str] = (),
) -> User:
    """Create the account, or reset its password if it exists (the CLI's create-user and --demo).

    The user's roles become `roles`, replacing any it had.
    """
    password_hash = await hasher.hash(password)
    user = await _by_email(db, email)
    if user is None:
        user = User(email=email, created_at=now, password_hash=password_hash)
        db.add(user)
    else:
        # A password reset: a login racing it must not yield a session.
        await invalidate_credentials(db, user)
        await void_links(db, user_id=user.id, now=now, kind="reset_password")
    user.password_hash = password_hash
    # An operator vouches for the address of the users it makes.
    user.email_verified = True
    user.first_name = first_name if first_name is not None else user.first_name
    user.last_name = last_name if last_name is not None else user.last_name
    user.phone_number = phone_number if phone_number is not None else user.phone_number
    await db.flush()
    await set_roles(db, user_id=user.id, roles=roles)
    return user


async def roles_of(db: AsyncSession, *, user_id: int) -> list[str]:
    """The user's roles, sorted."""
    found = await db.scalars(select(UserRole.role).where(UserRole.user_id == user_id))
    return sorted(found)


async def set_roles(db: AsyncSession, *, user_id: int, roles: Iterable[str]) -> None:
    """Replace the user's roles (already validated); the caller holds the user row's lock."""
    await db.execute(delete(UserRole).where(UserRole.user_id == user_id))
    db.add_all(UserRole(user_id=user_id, role=role) for role in sorted(set(roles)))
    await db.flush()


async def user_with_role(db: AsyncSession, *, user_id: int, role: str) -> tuple[User, bool] | None:
    """The user and whether it has `role` now, in one statement; None for no such user."""
    has_role = exists().where(UserRole.user_id == User.id, UserRole.role == role)
    row = (
        await db.execute(select(User, has_role.label("has_role")).where(User.id == user_id))
    ).one_or_none()
    return None if row is None else (row[0], bool(row[1]))


async def end_every_session(
    db: AsyncSession, *, user: User, revoked: RevokedSessions, now: datetime
) -> set[uuid.UUID]:
    """End every session of the user and cut its live access tokens at once (disabling,
    deleting): the one place where a user loses all its sessions by an operator's hand.
    A login racing it loses (invalidate_credentials)."""
    await invalidate_credentials(db, user)
    return await sessions.end_all(db, user_id=user.id, revoked=revoked, now=now)


async def delete_user(
    db: AsyncSession,
    *,
    user: User,
    revoked: RevokedSessions,
    now: datetime,
    audit: Audit,
    actor_id: int | None = None,
) -> None:
    """Delete the user: its sessions end first (their records outlive it), then its row
    goes, and the foreign keys' cascades take its tokens and roles with it."""
    ended = await end_every_session(db, user=user, revoked=revoked, now=now)
    # Pending forgot/resend requests name the address, not the user: they go too.
    await db.execute(delete(MailRequest).where(MailRequest.email == user.email))
    await db.execute(
        delete(User).where(User.id == user.id).execution_options(synchronize_session=False)
    )
    if user in db:
        db.expunge(user)
    audit.record(
        Event.USER_DELETED,
        actor_id=actor_id,
        target_user_id=user.id,
        sessions_ended=len(ended),
    )


async def void_links(
    db: AsyncSession, *, user_id: int, now: datetime, kind: str | None = None
) -> None:
    """Spend the user's outstanding links (of one kind, or all): a password change voids
    reset links, a reset every other link."""
    which = [AccountLink.user_id == user_id, AccountLink.used_at.is_(None)]
    if kind is not None:
        which.append(AccountLink.kind == kind)
    await db.execute(
        update(AccountLink)
        .where(*which)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )


PROFILE_FIELDS = ("first_name", "last_name", "phone_number")


async def update_profile(
    db: AsyncSession, *, user: User, changes: dict[str, str | None], audit: Audit
) -> User:
    """Set the given profile fields (None clears one); the email is not among them."""
    for name, value in changes.items():
        if name not in PROFILE_FIELDS:
            raise ValueError(f"{name} is not a profile field")
        setattr(user, name, value)
    await db.flush()
    audit.record(Event.ACCOUNT_UPDATED, user_id=user.id, fields=",".join(sorted(changes)))
    return user


async def delete_own_account(
    db: AsyncSession,
    *,
    hasher: PasswordHasher,
    throttle: Throttle,
    user: User,
    password: str,
    revoked: RevokedSessions,
    now: datetime,
    audit: Audit,
) -> None:
    """Delete the caller's account once its password is confirmed; a wrong password is a
    failed attempt of the account, counted with the logins."""
    await release_before_slow_work(db)
    try:
        async with throttle.attempt(user.email) as attempt:
            valid, _ = await hasher.verify(password, user.password_hash)
            if not valid:
                audit.record(Event.LOGIN_FAILED, user_id=user.id, reason="wrong password")
                await attempt.failed()
                raise WrongPassword("the password is wrong")
            await attempt.succeeded()
    except Throttled:
        audit.record(Event.LOGIN_THROTTLED, user_id=user.id)
        raise
    user_id = user.id
    await delete_user(db, user=user, revoked=revoked, now=now, audit=audit, actor_id=user_id)
    audit.record(Event.ACCOUNT_DELETED, user_id=user_id)
