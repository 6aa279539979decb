"""The mail outbox on the real database: queue in the caller's transaction, claim with a
lease, record the outcome."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import MailOutbox
from app.runtime import Runtime
from app.services import outbox
from tests.services.conftest import Services, transaction

LEASE = timedelta(minutes=5)
BODY = "Follow https://example.com/reset#secret to choose a new password."


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _enqueue(runtime: Runtime, to: str, now: datetime) -> int:
    async with transaction(runtime) as db:
        mail = await outbox.enqueue(
            db, sealer=runtime.sealer, kind="test", to=to, subject="Hello", body=BODY, now=now
        )
        await db.flush()
        return mail.id


def test_a_queued_mail_is_stored_sealed_and_only_if_its_transaction_commits(
    services: Services, db: Session
) -> None:
    async def work(runtime: Runtime) -> None:
        async with runtime.sessionmaker() as session:
            await outbox.enqueue(
                session,
                sealer=runtime.sealer,
                kind="test",
                to="a@example.com",
                subject="S",
                body=BODY,
                now=_now(),
            )
            await session.rollback()
        await _enqueue(runtime, "b@example.com", _now())

    services.run(work)
    [mail] = db.scalars(select(MailOutbox)).all()
    assert mail.recipient == "b@example.com"
    assert mail.status == outbox.PENDING
    assert mail.body is not None
    assert b"secret" not in mail.body


def test_the_sender_is_woken_after_the_commit_and_not_after_a_rollback(services: Services) -> None:
    woken: list[str] = []

    async def work(runtime: Runtime) -> None:
        runtime.sessionmaker.configure(info={outbox.WAKE_SENDER: lambda: woken.append("wake")})
        async with runtime.sessionmaker() as session:
            await outbox.enqueue(
                session,
                sealer=runtime.sealer,
                kind="test",
                to="a@example.com",
                subject="S",
                body=BODY,
                now=_now(),
            )
            await session.rollback()
        assert woken == []
        await _enqueue(runtime, "b@example.com", _now())

    services.run(work)
    assert woken == ["wake"]


def test_mail_is_claimed_oldest_due_first_and_a_leased_one_waits_for_its_lease(
    services: Services,
) -> None:
    now = _now()

    async def work(runtime: Runtime) -> list[str | None]:
        await _enqueue(runtime, "second@example.com", now)
        await _enqueue(runtime, "first@example.com", now - timedelta(minutes=1))
        await _enqueue(runtime, "future@example.com", now + timedelta(hours=1))
        claimed: list[str | None] = []
        for at in (now, now, now, now + LEASE + timedelta(seconds=1)):
            async with transaction(runtime) as session:
                mail = await outbox.claim_next(session, now=at, lease=LEASE)
            claimed.append(None if mail is None else f"{mail.recipient}#{mail.attempts}")
        return claimed

    assert services.run(work) == [
        "first@example.com#1",
        "second@example.com#1",
        None,
        # Both leases end together: the tie goes to the mail queued first.
        "second@example.com#2",
    ]


def test_outcomes_wipe_the_body_and_a_stale_claim_changes_nothing(
    services: Services, db: Session
) -> None:
    now = _now()

    async def work(runtime: Runtime) -> tuple[bool, bool, datetime | None]:
        sent_id = await _enqueue(runtime, "sent@example.com", now)
        await _enqueue(runtime, "failed@example.com", now + timedelta(seconds=1))
        async with transaction(runtime) as session:
            sent = await outbox.claim_next(session, now=now, lease=LEASE)
            assert sent is not None
            assert sent.id == sent_id
            await outbox.mark_sent(session, mail_id=sent.id, now=now)
        later = now + timedelta(seconds=1)
        async with transaction(runtime) as session:
            stale = await outbox.claim_next(session, now=later, lease=LEASE)
        assert stale is not None
        async with transaction(runtime) as session:
            # The lease ran out and another sender took the mail: this one's outcome is late.
            current = await outbox.claim_next(session, now=later + LEASE, lease=LEASE)
            assert current is not None
            await outbox.mark_retry(session, mail=stale, retry_at=later, error="late")
            late = await outbox.mark_failed(session, mail=stale, now=later, error="late")
            failed = await outbox.mark_failed(session, mail=current, now=later, error="SMTP 550")
        async with transaction(runtime) as session:
            due = await outbox.next_due_at(session)
        return late, failed, due

    late, failed, due = services.run(work)
    assert (late, failed, due) == (False, True, None)
    rows = {row.recipient: row for row in db.scalars(select(MailOutbox))}
    assert rows["sent@example.com"].status == outbox.SENT
    assert rows["failed@example.com"].status == outbox.FAILED
    assert rows["failed@example.com"].last_error == "SMTP 550"
    assert all(row.body is None for row in rows.values())
