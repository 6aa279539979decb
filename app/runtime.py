"""What one running service holds: settings, database, hasher, keys, tokens, revoked sessions."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings, load_token_keys
from app.db import create_engine_for, create_sessionmaker, database_work
from app.revocations import RevokedSessions, revoked_sessions
from app.security.access_tokens import AccessTokenCodec
from app.security.keys import KeySet
from app.security.passwords import PasswordHasher
from app.security.token_cache import VerifiedTokens
from app.services import sessions
from app.services.sessions import TokenIssuer
from app.throttle import Throttle


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
    clock: Callable[[], datetime] = field(default=utc_now)
    # Set when a graceful shutdown begins: /health/ready then answers 503.
    draining: bool = False

    @classmethod
    def build(cls, settings: Settings) -> "Runtime":
        keys = load_token_keys(settings)
        engine = create_engine_for(settings)
        codec = AccessTokenCodec(
            signing_key=keys.signing,
            verification_keys=keys.previous,
            issuer=settings.TOKEN_ISSUER,
            audience=settings.TOKEN_AUDIENCE,
            leeway_seconds=settings.TOKEN_LEEWAY_SECONDS,
        )
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
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
            ),
            revoked=revoked_sessions(
                settings.RATE_LIMIT_STORAGE_URL, settings.TOKEN_ACCESS_TTL_SECONDS
            ),
            access_tokens=VerifiedTokens(codec, leeway_seconds=settings.TOKEN_LEEWAY_SECONDS),
            throttle=Throttle(
                storage_url=settings.RATE_LIMIT_STORAGE_URL,
                max_failures=settings.LOGIN_MAX_FAILURES,
                window_seconds=settings.LOGIN_WINDOW_SECONDS,
                ip_limit=settings.IP_RATE_LIMIT,
            ),
            keys=keys,
        )

    def now(self) -> datetime:
        return self.clock()

    async def load_revoked_sessions(self) -> None:
        """Refill the revoked-session set from the database (once per process)."""

        async def fetch(since: datetime) -> list[tuple[uuid.UUID, datetime]]:
            async with database_work(
                self.sessionmaker, self.settings.DATABASE_TIMEOUT_SECONDS
            ) as db:
                return list(await sessions.recently_revoked(db, since=since))

        await self.revoked.load(fetch)

    async def close(self) -> None:
        self.hasher.shutdown()
        await self.throttle.close()
        await self.revoked.close()
        await self.engine.dispose()
