"""The mail outbox: a mail is a row written in the transaction that asks for it.

A sender (app/mail/sender.py) delivers it after commit, at least once: it claims a
due row with a lease in one short transaction, sends with no transaction open, then
records the outcome in a second one. A sender that dies mid-send leaves the lease to
expire, and the mail goes again.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.models import MailOutbox
from app.security.sealing import Sealer

MailKind = Literal["verify_email", "reset_password", "test"]
BODY_PURPOSE = "mail_outbox.body"
PENDING, SENT, FAILED = "pending", "sent", "failed"
# The session info key under which the runtime puts its sender's wake-up call.
WAKE_SENDER = "outbox_wake"


@dataclass(frozen=True)
class ClaimedMail:
    """A mail this sender holds the lease of; `attempts` counts this attempt too."""

    id: int
    kind: str
    recipient: str
    subject: str
    sealed_body: bytes | None
    attempts: int


async def enqueue(
    db: AsyncSession,
    *,
    sealer: Sealer,
    kind: MailKind,
    to: str,
    subject: str,
    body: str,
    now: datetime,
    user_id: int | None = None,
) -> MailOutbox:
    """Queue a mail in the caller's transaction; it goes only if that transaction commits.

    The body is sealed with DATA_ENCRYPTION_KEY: it holds a link worth an account.
    """
    mail = MailOutbox(
        kind=kind,
        user_id=user_id,
        recipient=to,
        subject=subject,
        body=sealer.seal(body.encode(), purpose=BODY_PURPOSE),
        status=PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    db.add(mail)
    wake_sender_after_commit(db)
    return mail


def wake_sender_after_commit(db: AsyncSession) -> None:
    """Have this process's sender look at the outbox once the caller's transaction commits
    (other processes find the work when they poll)."""
    wake: Callable[[], None] | None = db.info.get(WAKE_SENDER)
    if wake is not None:
        event.listen(db.sync_session, "after_commit", _call_once(wake), once=True)


def _call_once(wake: Callable[[], None]) -> Callable[[Session], None]:
    def after_commit(_session: Session) -> None:
        wake()

    return after_commit


async def claim_next(db: AsyncSession, *, now: datetime, lease: timedelta) -> ClaimedMail | None:
    """Take the lease of the mail due first, or None when nothing is due.

    One UPDATE ... RETURNING on both databases; on PostgreSQL the row is chosen with
    FOR UPDATE SKIP LOCKED, so concurrent senders take different rows without waiting.
    SQLite runs one writer at a time (BEGIN IMMEDIATE), which serialises claims.
    """
    due = (
        select(MailOutbox.id)
        .where(MailOutbox.status == PENDING, MailOutbox.next_attempt_at <= now)
        .order_by(MailOutbox.next_attempt_at, MailOutbox.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claimed = await db.execute(
        update(MailOutbox)
        .where(MailOutbox.id == due, MailOutbox.status == PENDING)
        .values(next_attempt_at=now + lease, attempts=MailOutbox.attempts + 1)
        .returning(
            MailOutbox.id,
            MailOutbox.kind,
            MailOutbox.recipient,
            MailOutbox.subject,
            MailOutbox.body,
            MailOutbox.attempts,
        )
        .execution_options(synchronize_session=False)
    )
    row = claimed.one_or_none()
    if row is None:
        return None
    return ClaimedMail(
        id=row.id,
        kind=row.kind,
        recipient=row.recipient,
        subject=row.subject,
        sealed_body=row.body,
        attempts=row.attempts,
    )


async def mark_sent(db: AsyncSession, *, mail_id: int, now: datetime) -> None:
    """The relay accepted the mail: wipe its body."""
    await db.execute(
        update(MailOutbox)
        .where(MailOutbox.id == mail_id)
        .values(status=SENT, sent_at=now, body=None, last_error=None)
        .execution_options(synchronize_session=False)
    )


async def mark_retry(
    db: AsyncSession, *, mail: ClaimedMail, retry_at: datetime, error: str
) -> None:
    """Try again at `retry_at`, unless another sender took the mail after our lease expired."""
    await db.execute(
        update(MailOutbox)
        .where(
            MailOutbox.id == mail.id,
            MailOutbox.status == PENDING,
            MailOutbox.attempts == mail.attempts,
        )
        .values(next_attempt_at=retry_at, last_error=error)
        .execution_options(synchronize_session=False)
    )


async def mark_failed(db: AsyncSession, *, mail: ClaimedMail, now: datetime, error: str) -> bool:
    """Give up on the mail and wipe its body; False when another sender holds it now."""
    result = await db.execute(
        update(MailOutbox)
        .where(
            MailOutbox.id == mail.id,
            MailOutbox.status == PENDING,
            MailOutbox.attempts == mail.attempts,
        )
        .values(status=FAILED, failed_at=now, body=None, last_error=error)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def next_due_at(db: AsyncSession) -> datetime | None:
    """When the earliest pending mail is due (or its lease ends)."""
    earliest: datetime | None = await db.scalar(
        select(func.min(MailOutbox.next_attempt_at)).where(MailOutbox.status == PENDING)
    )
    return earliest
