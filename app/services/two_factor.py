"""Two-factor use cases: TOTP setup and confirmation, recovery codes, the login's second
factor, switching it off (by the user, an administrator or the CLI).

Every wrong code is a failed attempt of the account, on the same counter as the logins
(app.stores.throttle), and a right one clears nothing: the count is cleared only when a
login issues tokens, so alternating requests cannot guess codes forever.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import release_before_slow_work
from app.errors import (
    AppError,
    Conflict,
    EmailNotVerified,
    InvalidCode,
    InvalidCredentials,
    Throttled,
    WrongPassword,
)
from app.models import RecoveryCode, TotpFactor, User
from app.observability.audit import Audit, Event
from app.security import totp
from app.security.passwords import PasswordHasher
from app.security.sealing import Sealer
from app.services import accounts, sessions
from app.stores.revocations import RevokedSessions
from app.stores.throttle import Throttle

RECOVERY_SUBKEY = "recovery codes"


@dataclass(frozen=True, slots=True)
class Setup:
    secret: str
    otpauth_uri: str


def _secret_purpose(user_id: int) -> str:
    # Bound to its user: a sealed secret copied onto another user's row does not open.
    return f"totp secret of user {user_id}"


async def _factor(db: AsyncSession, user_id: int) -> TotpFactor | None:
    return await db.get(TotpFactor, user_id, populate_existing=True)


async def _accept_totp(
    db: AsyncSession, *, sealer: Sealer, user_id: int, code: str, confirmed: bool, now: datetime
) -> bool:
    """Whether `code` is a TOTP code of the user's factor not used before; if so it is
    spent. RFC 6238 §5.2: a code whose step is at or before the last accepted step is a
    replay. The step moves by a conditional UPDATE: of two concurrent uses of one code,
    the second waits for the first's row lock, then finds the step taken."""
    factor = await _factor(db, user_id)
    if factor is None or (factor.confirmed_at is not None) != confirmed:
        return False
    secret = sealer.open(factor.secret, purpose=_secret_purpose(user_id)).decode()
    step = totp.matching_step(secret, code, now=now)
    if step is None:
        return False
    state = TotpFactor.confirmed_at.is_not(None) if confirmed else TotpFactor.confirmed_at.is_(None)
    won = await db.execute(
        update(TotpFactor)
        .where(
            TotpFactor.user_id == user_id,
            state,
            or_(TotpFactor.last_step.is_(None), TotpFactor.last_step < step),
        )
        # Re-sealed under the current key at each use: a key rotation moves the secrets of
        # active users by itself (docs: README, "Two-factor").
        .values(
            last_step=step,
            secret=sealer.seal(secret.encode(), purpose=_secret_purpose(user_id)),
        )
        .returning(TotpFactor.user_id)
        .execution_options(synchronize_session=False)
    )
    return won.one_or_none() is not None


async def _spend_recovery_code(
    db: AsyncSession, *, sealer: Sealer, user_id: int, code: str, now: datetime, audit: Audit
) -> bool:
    """Whether `code` is an unused recovery code of the user; if so it is spent, by a
    conditional UPDATE (of two concurrent uses one wins). Digests made under a previous
    DATA_ENCRYPTION_KEY still match while that key is configured."""
    normalized = totp.normalize_recovery_code(code)
    if normalized is None:
        return False
    matches = [
        and_(
            RecoveryCode.key_id == key.kid,
            RecoveryCode.digest == totp.recovery_digest(key.subkey(RECOVERY_SUBKEY), normalized),
        )
        for key in sealer.keys
    ]
    spent = await db.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None), or_(*matches))
        .values(used_at=now)
        .returning(RecoveryCode.id)
        .execution_options(synchronize_session=False)
    )
    if not spent.scalars().all():
        return False
    left = await db.scalars(
        select(RecoveryCode.id).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
        )
    )
    audit.record(Event.RECOVERY_CODE_USED, user_id=user_id, codes_left=len(left.all()))
    return True


async def _new_recovery_codes(
    db: AsyncSession, *, sealer: Sealer, user_id: int, now: datetime
) -> list[str]:
    """Ten fresh codes replacing any the user had; only their digests are stored."""
    await db.execute(
        delete(RecoveryCode)
        .where(RecoveryCode.user_id == user_id)
        .execution_options(synchronize_session=False)
    )
    codes = totp.new_recovery_codes()
    key = sealer.current
    subkey = key.subkey(RECOVERY_SUBKEY)
    db.add_all(
        RecoveryCode(
            user_id=user_id,
            digest=totp.recovery_digest(subkey, totp.normalize_recovery_code(code) or ""),
            key_id=key.kid,
            created_at=now,
        )
        for code in codes
    )
    await db.flush()
    return codes


async def _check(
    throttle: Throttle,
    user: User,
    audit: Audit,
    verdict: Callable[[], Awaitable[bool]],
    *,
    error: AppError,
    reason: str,
) -> None:
    """Run one check of a password or code of a signed-in user, counted with the logins: a
    wrong answer is a failed attempt of the account (429 past LOGIN_MAX_FAILURES) and
    raises `error`; a right one leaves the count alone (only issuing tokens clears it)."""
    try:
        async with throttle.attempt(user.email) as attempt:
            if not await verdict():
                # The reason is for the log only; never the code itself.
                audit.record(Event.TWO_FACTOR_FAILED, user_id=user.id, reason=reason)
                await attempt.failed()
                raise error
    except Throttled:
        audit.record(Event.LOGIN_THROTTLED, user_id=user.id)
        raise


def _password(
    db: AsyncSession, hasher: PasswordHasher, user: User, password: str
) -> Callable[[], Awaitable[bool]]:
    async def verdict() -> bool:
        # No transaction stays open while argon2 runs.
        await release_before_slow_work(db)
        valid, _ = await hasher.verify(password, user.password_hash)
        return valid

    return verdict


async def begin_setup(
    db: AsyncSession,
    *,
    hasher: PasswordHasher,
    throttle: Throttle,
    sealer: Sealer,
    user: User,
    password: str,
    issuer_name: str,
    mail_enabled: bool,
    now: datetime,
    audit: Audit,
) -> Setup:
    """A new pending TOTP secret, replacing any pending one; two-factor stays off until a
    code confirms it. Conflict when it is on already; EmailNotVerified while mail is enabled
    and the address unverified (an attacker who registered a victim's address must not
    enrol a factor first); a wrong password is WrongPassword and a failed attempt."""
    if user.two_factor_enabled:
        raise Conflict("two-factor is already on")
    # Until email verification exists every address reads as verified.
    if mail_enabled and not user.email_verified:
        raise EmailNotVerified()
    await _check(
        throttle,
        user,
        audit,
        _password(db, hasher, user, password),
        error=WrongPassword(),
        reason="wrong password",
    )
    secret = totp.new_secret()
    await db.execute(
        delete(TotpFactor)
        .where(TotpFactor.user_id == user.id)
        .execution_options(synchronize_session=False)
    )
    db.add(
        TotpFactor(
            user_id=user.id,
            secret=sealer.seal(secret.encode(), purpose=_secret_purpose(user.id)),
            created_at=now,
        )
    )
    await db.flush()
    return Setup(secret, totp.otpauth_uri(secret, account=user.email, issuer=issuer_name))


async def confirm(
    db: AsyncSession,
    *,
    throttle: Throttle,
    sealer: Sealer,
    revoked: RevokedSessions,
    user: User,
    code: str,
    current_session: uuid.UUID,
    now: datetime,
    audit: Audit,
) -> list[str]:
    """Switch two-factor on with a first code of the pending secret; the ten recovery codes.

    Every other session of the user ends, and a password-only login racing this never keeps
    a session (the credentials version moves in this transaction). Conflict when nothing is
    pending; a wrong code is InvalidCode and a failed attempt."""
    factor = await _factor(db, user.id)
    if user.two_factor_enabled or factor is None or factor.confirmed_at is not None:
        raise Conflict("no two-factor setup is pending")

    async def verdict() -> bool:
        return await _accept_totp(
            db, sealer=sealer, user_id=user.id, code=code, confirmed=False, now=now
        )

    await _check(throttle, user, audit, verdict, error=InvalidCode(), reason="wrong code")
    await accounts.invalidate_credentials(db, user)
    await db.execute(
        update(TotpFactor)
        .where(TotpFactor.user_id == user.id)
        .values(confirmed_at=now)
        .execution_options(synchronize_session=False)
    )
    user.two_factor_enabled = True
    codes = await _new_recovery_codes(db, sealer=sealer, user_id=user.id, now=now)
    ended = await sessions.end_all(
        db, user_id=user.id, revoked=revoked, now=now, except_session=current_session
    )
    audit.record(Event.TWO_FACTOR_ENABLED, user_id=user.id, sessions_ended=len(ended))
    return codes


async def regenerate_recovery_codes(
    db: AsyncSession,
    *,
    throttle: Throttle,
    sealer: Sealer,
    user: User,
    code: str,
    now: datetime,
    audit: Audit,
) -> list[str]:
    """Ten new recovery codes for a TOTP code; the old ones are void. Conflict when
    two-factor is off; a wrong code is InvalidCode and a failed attempt."""
    if not user.two_factor_enabled:
        raise Conflict("two-factor is off")

    async def verdict() -> bool:
        return await _accept_totp(
            db, sealer=sealer, user_id=user.id, code=code, confirmed=True, now=now
        )

    await _check(throttle, user, audit, verdict, error=InvalidCode(), reason="wrong code")
    codes = await _new_recovery_codes(db, sealer=sealer, user_id=user.id, now=now)
    audit.record(Event.RECOVERY_CODES_REGENERATED, user_id=user.id)
    return codes


async def verify_second_factor(
    db: AsyncSession,
    *,
    sealer: Sealer,
    user_id: int,
    otp: str | None = None,
    recovery_code: str | None = None,
    now: datetime,
    audit: Audit,
) -> bool:
    """Whether a TOTP code or a recovery code is good for the user, spending it if so."""
    if otp is not None:
        return await _accept_totp(
            db, sealer=sealer, user_id=user_id, code=otp, confirmed=True, now=now
        )
    if recovery_code is not None:
        return await _spend_recovery_code(
            db, sealer=sealer, user_id=user_id, code=recovery_code, now=now, audit=audit
        )
    return False


@dataclass(frozen=True, slots=True)
class PresentedFactor:
    """The second factor a login presents (accounts.SecondFactor): a TOTP code, a recovery
    code, or neither."""

    otp: str | None
    recovery_code: str | None
    sealer: Sealer
    now: datetime
    audit: Audit

    @property
    def presented(self) -> bool:
        return self.otp is not None or self.recovery_code is not None

    async def verify(self, db: AsyncSession, user: User) -> bool:
        return await verify_second_factor(
            db,
            sealer=self.sealer,
            user_id=user.id,
            otp=self.otp,
            recovery_code=self.recovery_code,
            now=self.now,
            audit=self.audit,
        )


async def disable(
    db: AsyncSession,
    *,
    hasher: PasswordHasher,
    throttle: Throttle,
    sealer: Sealer,
    user: User,
    password: str,
    code: str,
    now: datetime,
    audit: Audit,
) -> None:
    """Switch two-factor off with the password and a TOTP or recovery code. A wrong password
    and a wrong code get one answer (InvalidCredentials), each a failed attempt."""
    if not user.two_factor_enabled:
        raise Conflict("two-factor is off")
    check_password = _password(db, hasher, user, password)

    async def verdict() -> bool:
        if not await check_password():
            return False
        recovery = totp.normalize_recovery_code(code) is not None
        return await verify_second_factor(
            db,
            sealer=sealer,
            user_id=user.id,
            otp=None if recovery else code,
            recovery_code=code if recovery else None,
            now=now,
            audit=audit,
        )

    await _check(
        throttle, user, audit, verdict, error=InvalidCredentials(), reason="wrong password or code"
    )
    await switch_off(db, user=user, audit=audit)


async def switch_off(
    db: AsyncSession, *, user: User, audit: Audit, actor_id: int | None = None
) -> bool:
    """Remove the user's factor and recovery codes (a pending setup too); whether
    two-factor was on. The user's own DELETE, PATCH /admin/users/{id}, reset-two-factor."""
    was_on = user.two_factor_enabled
    await db.execute(
        delete(TotpFactor)
        .where(TotpFactor.user_id == user.id)
        .execution_options(synchronize_session=False)
    )
    await db.execute(
        delete(RecoveryCode)
        .where(RecoveryCode.user_id == user.id)
        .execution_options(synchronize_session=False)
    )
    user.two_factor_enabled = False
    await db.flush()
    if was_on:
        audit.record(Event.TWO_FACTOR_DISABLED, user_id=user.id, actor_id=actor_id)
    return was_on
