"""What one running service holds: settings, database, hasher, keys, tokens, revoked sessions,
data encryption and the mail sender."""

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_engine_for, create_sessionmaker, database_work
from app.keyfiles import load_sealer, load_token_keys
from app.mail.backends import backend_for
from app.mail.sender import MailSender
from app.observability import metrics
from app.observability.audit import Audit
from app.security.access_tokens import AccessTokenCodec
from app.security.keys import KeySet
from app.security.passwords import PasswordHasher
from app.security.sealing import Sealer
from app.security.token_cache import VerifiedTokens
from app.services import links, outbox, sessions
from app.services.links import LinkPolicy
from app.services.logins import Logins
from app.services.sessions import TokenIssuer
from app.stores.revocations import POLL_SECONDS, RevokedSessions, revoked_sessions
from app.stores.throttle import Throttle

log = logging.getLogger("app.stores.revocations")


def utc_now() -> datetime:
    # Timestamps have whole seconds (the contract), so tokens and rows agree.
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    hasher: PasswordHasher
    issuer: TokenIssuer
    revoked: RevokedSessions
    throttle: Throttle
    access_tokens: VerifiedTokens
    keys: KeySet
    sealer: Sealer
    link_policy: LinkPolicy
    # None under MAIL_BACKEND=disabled: queued mail then waits in the outbox.
    mail: MailSender | None = None
    clock: Callable[[], datetime] = field(default=utc_now)
    # Set when a graceful shutdown begins: /health/ready then answers 503.
    draining: bool = False
    # Login and refresh, as every router calls them (built from the fields above).
    logins: Logins = field(init=False)

    @classmethod
    def build(cls, settings: Settings) -> "Runtime":
        keys = load_token_keys(settings)
        sealer = load_sealer(settings)
        engine = create_engine_for(settings)
        sessionmaker = create_sessionmaker(engine)
        codec = AccessTokenCodec(
            signing_key=keys.signing,
            verification_keys=keys.previous,
            issuer=settings.TOKEN_ISSUER,
            audience=settings.TOKEN_AUDIENCE,
            leeway_seconds=settings.TOKEN_LEEWAY_SECONDS,
        )

        def wall() -> float:
            # Late-bound: a test that swaps `runtime.clock` moves every module's time.
            return runtime.clock().timestamp()

        async def ended_since(since: datetime) -> list[tuple[uuid.UUID, datetime]]:
            async with database_work(sessionmaker, settings.DATABASE_TIMEOUT_SECONDS) as db:
                return list(await sessions.recently_revoked(db, since=since))

        runtime = cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            hasher=PasswordHasher(
                memory_kib=settings.PASSWORD_HASH_MEMORY_KIB,
                time_cost=settings.PASSWORD_HASH_TIME_COST,
                parallelism=settings.PASSWORD_HASH_PARALLELISM,
                queue_limit=settings.PASSWORD_HASH_QUEUE_LIMIT,
            ),
            issuer=TokenIssuer(
                codec=codec,
                access_ttl=timedelta(seconds=settings.TOKEN_ACCESS_TTL_SECONDS),
                refresh_ttl=timedelta(seconds=settings.TOKEN_REFRESH_TTL_SECONDS),
                session_max=timedelta(seconds=settings.TOKEN_SESSION_MAX_SECONDS),
                reuse_grace=timedelta(seconds=settings.REFRESH_REUSE_GRACE_SECONDS),
            ),
            revoked=revoked_sessions(
                settings.RATE_LIMIT_STORAGE_URL, settings.retention_seconds, ended_since, clock=wall
            ),
            access_tokens=VerifiedTokens(
                codec, leeway_seconds=settings.TOKEN_LEEWAY_SECONDS, clock=wall
            ),
            throttle=Throttle(
                storage_url=settings.RATE_LIMIT_STORAGE_URL,
                max_failures=settings.LOGIN_MAX_FAILURES,
                window_seconds=settings.LOGIN_WINDOW_SECONDS,
                ip_limit=settings.IP_RATE_LIMIT,
                clock=wall,
                mail_limit=settings.MAIL_PER_ADDRESS_LIMIT,
            ),
            keys=keys,
            sealer=sealer,
            link_policy=LinkPolicy(
                base_url=settings.account_link_base_url,
                verify_ttl_seconds=settings.EMAIL_VERIFY_TTL_SECONDS,
                reset_ttl_seconds=settings.PASSWORD_RESET_TTL_SECONDS,
            ),
        )
        runtime.logins = Logins(
            hasher=runtime.hasher,
            throttle=runtime.throttle,
            issuer=runtime.issuer,
            revoked=runtime.revoked,
            sealer=sealer,
            require_verified=settings.REQUIRE_VERIFIED_EMAIL,
            clock=lambda: runtime.clock(),
        )
        runtime.hasher.on_depth = metrics.password_hash_queue_depth
        if settings.MAIL_BACKEND != "disabled":
            runtime.mail = MailSender(
                settings=settings,
                sessionmaker=sessionmaker,
                backend=backend_for(settings),
                sealer=sealer,
                # Late-bound, so a test that swaps the runtime's clock moves the sender's too.
                clock=lambda: runtime.clock(),
            )
            runtime.mail.on_outcome = metrics.mail
            runtime.mail.before_drain = runtime.answer_mail_requests
            # A transaction that queues mail wakes this process's sender when it commits.
            sessionmaker.configure(info={outbox.WAKE_SENDER: runtime.mail.wake})
        return runtime

    def now(self) -> datetime:
        """The one clock (whole seconds, UTC): services, stores, the token cache and the
        mail sender all read it, so a test that replaces `clock` freezes every one."""
        return self.clock()

    async def answer_mail_requests(self) -> None:
        """Turn every recorded forgot-password and resend request into a link and a mail,
        or into nothing (the sender calls it before looking at the outbox)."""
        # No request, client or path: this runs after the response, in the sender's task.
        audit = Audit(request_id=None, ip=None, user_agent=None)
        while True:
            async with database_work(
                self.sessionmaker, self.settings.DATABASE_TIMEOUT_SECONDS
            ) as db:
                handled = await links.handle_next_request(
                    db,
                    policy=self.link_policy,
                    sealer=self.sealer,
                    throttle=self.throttle,
                    now=self.clock(),
                    audit=audit,
                )
                await db.commit()
            if not handled:
                return

    async def load_revoked_sessions(self) -> None:
        """Make sure the revoked-session set is whole, rebuilding it from the database if not;
        ReloadFailed names the dependency that did not answer."""
        await self.revoked.start()

    async def follow_ended_sessions(self) -> None:
        """With memory://, read the sessions other processes (the CLI) ended, every second,
        until cancelled. Redis shares the set itself, so there is nothing to follow."""
        if self.settings.shared_storage:
            return
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self.revoked.poll()
            except Exception:
                # Logged by the store when the database fails; the next poll retries.
                log.debug("ended-session poll failed", exc_info=True)

    def start_mail(self) -> None:
        if self.mail is not None:
            self.mail.start()

    async def close(self) -> None:
        if self.mail is not None:
            await self.mail.stop()
        self.hasher.shutdown()
        await self.throttle.close()
        await self.revoked.close()
        await self.engine.dispose()
