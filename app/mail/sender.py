"""The outbox sender: one task per process, delivering queued mail after commit.

Each mail takes two short transactions with the SMTP exchange between them, never
inside one: on SQLite the pool holds a single connection, and a relay taking its full
SMTP_TIMEOUT_SECONDS would otherwise stall every request for as long.

1. claim: the due row's `next_attempt_at` moves past a lease longer than the whole
   exchange, and the claim commits; no other sender takes the row meanwhile;
2. send, with no connection held;
3. record: sent (the body is wiped), a retry after a doubling, jittered delay, or failed.

A process that dies between 1 and 3 leaves the lease to expire: the mail goes again
(at least once). The task wakes when a transaction that queued mail commits in this
process, and polls every MAIL_POLL_SECONDS for mail queued by other processes.
"""

import asyncio
import logging
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.mail.backends import MailBackend, MailNotSent, build_message
from app.security.sealing import Sealer, SealError
from app.services import outbox
from app.services.outbox import ClaimedMail

log = logging.getLogger("app.mail")

MAX_RETRY_DELAY_SECONDS = 3600.0
# Past the exchange itself, time enough for the claim's and the outcome's transactions.
LEASE_MARGIN_SECONDS = 10.0
MIN_IDLE_SECONDS = 0.25
# The outcomes counted per kind (Prometheus: auth_mails_total{kind, result}).
SENT, RETRIED, FAILED = "sent", "retried", "failed"


def retry_delay(attempts: int, base_seconds: float) -> float:
    """Doubling from `base_seconds` after the first failure, with +-25% jitter so that
    mails failed together do not retry together; at most one hour."""
    delay: float = base_seconds * 2.0 ** min(attempts - 1, 32)
    jitter = random.uniform(0.75, 1.25)  # noqa: S311 - spreading retries, not a secret
    return min(delay * jitter, MAX_RETRY_DELAY_SECONDS)


class MailSender:
    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        backend: MailBackend,
        sealer: Sealer,
        clock: Callable[[], datetime],
    ) -> None:
        self.sessionmaker = sessionmaker
        self.backend = backend
        self.sealer = sealer
        self.clock = clock
        self.mail_from = settings.MAIL_FROM
        self.retry_base_seconds = settings.MAIL_RETRY_BASE_SECONDS
        self.max_attempts = settings.MAIL_MAX_ATTEMPTS
        self.poll_seconds = settings.MAIL_POLL_SECONDS
        self.send_timeout = settings.SMTP_TIMEOUT_SECONDS
        self.lease = timedelta(seconds=math.ceil(2 * self.send_timeout + LEASE_MARGIN_SECONDS))
        # (kind, result) -> count; `on_outcome` is called with the same pair, for metrics.
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.on_outcome: Callable[[str, str], None] | None = None
        # Work that may queue mail, done first at each wake-up (forgot/resend requests).
        self.before_drain: Callable[[], Awaitable[None]] | None = None
        self._wake_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._relay_failing = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake_event = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(self._wake_event), name="mail-outbox-sender")

    def wake(self) -> None:
        """Look for due mail now (called after a commit that queued one); thread-safe."""
        if self._loop is not None and self._wake_event is not None:
            self._loop.call_soon_threadsafe(self._wake_event.set)

    async def stop(self) -> None:
        """Let a mail in flight finish (within the SMTP timeout), then end the task."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if self._wake_event is not None:
            self._wake_event.set()
        done, _ = await asyncio.wait({task}, timeout=self.send_timeout + 1)
        if not done:
            # The mail keeps its lease and goes again after it, from whichever process.
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self, wake_event: asyncio.Event) -> None:
        while not self._stopping:
            wake_event.clear()
            try:
                if self.before_drain is not None:
                    await self.before_drain()
                await self._drain()
                delay = await self._idle_seconds()
            except Exception as exc:
                # The database is down, say: serve on, and look again later.
                log.warning("mail outbox unreachable (%s); trying again", type(exc).__name__)
                delay = self.poll_seconds
            if self._stopping:
                break
            try:
                async with asyncio.timeout(delay):
                    await wake_event.wait()
            except TimeoutError:
                pass

    async def _drain(self) -> None:
        while not self._stopping:
            async with self.sessionmaker() as db, db.begin():
                mail = await outbox.claim_next(db, now=self.clock(), lease=self.lease)
            if mail is None:
                return
            await self._deliver(mail)

    async def _idle_seconds(self) -> float:
        async with self.sessionmaker() as db, db.begin():
            due_at = await outbox.next_due_at(db)
        if due_at is None:
            return self.poll_seconds
        wait = (due_at - self.clock()).total_seconds()
        # The clock has whole seconds: a row due "now" may wait for the next one.
        return min(max(wait, MIN_IDLE_SECONDS), self.poll_seconds)

    async def _deliver(self, mail: ClaimedMail) -> None:
        try:
            body = self._open_body(mail)
            message = build_message(
                sender=self.mail_from,
                to=mail.recipient,
                subject=mail.subject,
                body=body,
                now=self.clock(),
            )
            await self.backend.send(message)
        except MailNotSent as exc:
            await self._not_sent(mail, exc)
            return
        except Exception as exc:
            # Whatever went wrong, the message may not reach the log: only its class does.
            await self._not_sent(mail, MailNotSent(f"unexpected {type(exc).__name__}"))
            return
        async with self.sessionmaker() as db, db.begin():
            await outbox.mark_sent(db, mail_id=mail.id, now=self.clock())
        if self._relay_failing:
            self._relay_failing = False
            log.warning("mail is being delivered again")
        self._count(mail.kind, SENT)

    def _open_body(self, mail: ClaimedMail) -> str:
        if mail.sealed_body is None:
            raise MailNotSent("the mail has no body", permanent=True)
        try:
            return self.sealer.open(mail.sealed_body, purpose=outbox.BODY_PURPOSE).decode()
        except SealError:
            raise MailNotSent(
                "its body does not open with DATA_ENCRYPTION_KEY or a previous key",
                permanent=True,
            ) from None

    async def _not_sent(self, mail: ClaimedMail, exc: MailNotSent) -> None:
        now = self.clock()
        error = exc.reason[:100]
        if exc.permanent or mail.attempts >= self.max_attempts:
            async with self.sessionmaker() as db, db.begin():
                marked = await outbox.mark_failed(db, mail=mail, now=now, error=error)
            if marked:
                # The one line per lost mail: no address, no body, no link.
                log.error(
                    "mail %d (%s) failed after %d attempt(s), not retried: %s",
                    mail.id,
                    mail.kind,
                    mail.attempts,
                    exc.reason,
                )
                self._count(mail.kind, FAILED)
            return
        # Whole seconds, like every timestamp of the service.
        delay = math.ceil(retry_delay(mail.attempts, self.retry_base_seconds))
        async with self.sessionmaker() as db, db.begin():
            await outbox.mark_retry(
                db, mail=mail, retry_at=now + timedelta(seconds=delay), error=error
            )
        if not self._relay_failing:
            # One line when delivery starts failing, not one per mail and attempt.
            self._relay_failing = True
            log.warning("mail not delivered, will retry: %s", exc.reason)
        self._count(mail.kind, RETRIED)

    def _count(self, kind: str, result: str) -> None:
        self.outcomes[kind, result] += 1
        if self.on_outcome is not None:
            self.on_outcome(kind, result)
