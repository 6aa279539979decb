"""Mailed account links: verify an address, reset a forgotten password.

A link's token has 256 random bits and is stored only as its SHA-256 digest; it is spent
once, by a conditional UPDATE (of two concurrent uses exactly one wins); it expires; a newer
link of the same kind voids the older ones. The token travels in the URL fragment
(`#token=`), which no server, proxy or access log ever sees.

forgot-password and resend only record the request (`record_request`): the same one INSERT
whether or not the address has an account, so neither the answer nor its timing tells. The
outbox sender turns each recorded request into a link and a mail, or into nothing
(`handle_next_request`), after the response.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import release_before_slow_work
from app.errors import InvalidLink
from app.models import AccountLink, MailRequest, User
from app.observability.audit import Audit, Event
from app.security import link_tokens
from app.security.passwords import PasswordHasher
from app.security.sealing import Sealer
from app.services import accounts, outbox, sessions
from app.stores.revocations import RevokedSessions
from app.stores.throttle import Throttle

LinkKind = Literal["verify_email", "reset_password"]
VERIFY_EMAIL: LinkKind = "verify_email"
RESET_PASSWORD: LinkKind = "reset_password"  # noqa: S105 - a link kind
PAGES: dict[LinkKind, str] = {
    VERIFY_EMAIL: "/account/verify-email",
    RESET_PASSWORD: "/account/reset-password",
}
SUBJECTS: dict[LinkKind, str] = {
    VERIFY_EMAIL: "Verify your email address",
    RESET_PASSWORD: "Reset your password",
}


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """Where links point and how long each kind lasts (ACCOUNT_LINK_BASE_URL and the TTLs)."""

    base_url: str
    verify_ttl_seconds: int
    reset_ttl_seconds: int

    def ttl(self, kind: LinkKind) -> timedelta:
        seconds = self.verify_ttl_seconds if kind == VERIFY_EMAIL else self.reset_ttl_seconds
        return timedelta(seconds=seconds)

    def url(self, kind: LinkKind, token: str) -> str:
        return f"{self.base_url}{PAGES[kind]}#token={token}"


def _lifetime(ttl: timedelta) -> str:
    minutes = int(ttl.total_seconds()) // 60
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes // 60} hours"
    return f"{max(minutes, 1)} minutes"


def _body(kind: LinkKind, link: str, ttl: timedelta) -> str:
    if kind == VERIFY_EMAIL:
        return (
            "Hello,\n\n"
            "please confirm that this is your email address by opening this link within "
            f"{_lifetime(ttl)}:\n\n{link}\n\n"
            "If you did not create an account, ignore this mail.\n"
        )
    return (
        "Hello,\n\n"
        "someone asked to reset the password of the account of this address. To choose a "
        f"new password, open this link within {_lifetime(ttl)}:\n\n{link}\n\n"
        "If it was not you, ignore this mail: your password stays as it is.\n"
        "Setting a new password ends every session of the account.\n"
    )


async def issue(
    db: AsyncSession,
    *,
    kind: LinkKind,
    user: User,
    policy: LinkPolicy,
    sealer: Sealer,
    now: datetime,
    audit: Audit,
) -> None:
    """Make a link of `kind` for the user, voiding its older ones, and queue its mail in the
    caller's transaction. The token exists only in the sealed mail body."""
    await accounts.void_links(db, user_id=user.id, now=now, kind=kind)
    token = link_tokens.new_link_token()
    ttl = policy.ttl(kind)
    db.add(
        AccountLink(
            kind=kind,
            user_id=user.id,
            digest=link_tokens.digest(token),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    await outbox.enqueue(
        db,
        sealer=sealer,
        kind=kind,
        to=user.email,
        subject=SUBJECTS[kind],
        body=_body(kind, policy.url(kind, token), ttl),
        now=now,
        user_id=user.id,
    )
    if kind == VERIFY_EMAIL:
        audit.record(Event.EMAIL_VERIFICATION_SENT, user_id=user.id)


async def record_request(db: AsyncSession, *, kind: LinkKind, email: str, now: datetime) -> None:
    """Record a forgot-password or resend request for a canonical address, known or not."""
    db.add(MailRequest(kind=kind, email=email, created_at=now))
    outbox.wake_sender_after_commit(db)


async def handle_next_request(
    db: AsyncSession,
    *,
    policy: LinkPolicy,
    sealer: Sealer,
    throttle: Throttle,
    now: datetime,
    audit: Audit,
) -> bool:
    """Take the oldest recorded request and answer it: a link and a mail when the address
    has an account that needs one and is under MAIL_PER_ADDRESS_LIMIT, else nothing. Past
    the limit no link is made, so the link already mailed stays valid: nobody can void a
    victim's link by asking again. False when no request is waiting."""
    request = (
        await db.execute(
            select(MailRequest).order_by(MailRequest.id).limit(1).with_for_update(skip_locked=True)
        )
    ).scalar_one_or_none()
    if request is None:
        return False
    await db.execute(delete(MailRequest).where(MailRequest.id == request.id))
    kind: LinkKind = RESET_PASSWORD if request.kind == RESET_PASSWORD else VERIFY_EMAIL
    user = (await db.execute(select(User).where(User.email == request.email))).scalar_one_or_none()
    if user is None or not user.is_active:
        return True
    if kind == VERIFY_EMAIL and user.email_verified:
        return True
    if not await throttle.mail_allowed(kind, user.email):
        return True
    await issue(db, kind=kind, user=user, policy=policy, sealer=sealer, now=now, audit=audit)
    return True


async def _valid_link(
    db: AsyncSession, *, kind: LinkKind, token: str, now: datetime
) -> AccountLink:
    # A token of another shape (too long, not base64url, unicode) is nobody's: no lookup.
    if not link_tokens.is_well_formed(token):
        raise InvalidLink()
    link = (
        await db.execute(
            select(AccountLink).where(
                AccountLink.digest == link_tokens.digest(token),
                AccountLink.kind == kind,
                AccountLink.used_at.is_(None),
                AccountLink.expires_at > now,
            )
        )
    ).scalar_one_or_none()
    if link is None:
        raise InvalidLink()
    return link


async def _spend(db: AsyncSession, *, link_id: int, now: datetime) -> None:
    """Spend the link now; of two concurrent uses, the one whose UPDATE finds it unused wins."""
    spent = await db.execute(
        update(AccountLink)
        .where(
            AccountLink.id == link_id,
            AccountLink.used_at.is_(None),
            AccountLink.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(spent, "rowcount", 0):
        raise InvalidLink()


async def verify_email(db: AsyncSession, *, token: str, now: datetime, audit: Audit) -> None:
    """Use a verification link: the address is verified."""
    link = await _valid_link(db, kind=VERIFY_EMAIL, token=token, now=now)
    await _spend(db, link_id=link.id, now=now)
    user = await db.get(User, link.user_id)
    if user is None:
        raise InvalidLink()
    user.email_verified = True
    await accounts.void_links(db, user_id=user.id, now=now, kind=VERIFY_EMAIL)
    audit.record(Event.EMAIL_VERIFIED, user_id=user.id)


async def reset_password(
    db: AsyncSession,
    *,
    hasher: PasswordHasher,
    token: str,
    new_password: str,
    min_length: int,
    revoked: RevokedSessions,
    now: datetime,
    audit: Audit,
) -> None:
    """Use a reset link: the token first (InvalidLink, nothing hashed), then the new
    password's rules (422, the link stays usable), then the change. The password is set,
    the address verified (the mail reached it), every other link voided and every session
    ended."""
    link = await _valid_link(db, kind=RESET_PASSWORD, token=token, now=now)
    user = await db.get(User, link.user_id)
    if user is None:
        raise InvalidLink()
    accounts.check_new_password(
        new_password, field="new_password", min_length=min_length, email=user.email
    )
    link_id, user_id = link.id, user.id
    # No transaction stays open while argon2 runs; the spend below decides the race.
    await release_before_slow_work(db)
    new_hash = await hasher.hash(new_password)
    await _spend(db, link_id=link_id, now=now)
    user = await db.get(User, user_id)
    if user is None:
        raise InvalidLink()
    # A login racing the reset must not yield a session (see invalidate_credentials).
    await accounts.invalidate_credentials(db, user)
    user.password_hash = new_hash
    user.email_verified = True
    await accounts.void_links(db, user_id=user.id, now=now)
    ended = await sessions.end_all(db, user_id=user.id, revoked=revoked, now=now)
    audit.record(Event.PASSWORD_RESET, user_id=user.id, sessions_ended=len(ended))
