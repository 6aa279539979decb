"""Throttling with the `limits` library: failed logins per account, requests per client IP."""

import math
import time

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

from app.errors import ServiceUnavailable, Throttled

KEY_PREFIX = "jwt-auth-api"


def limits_storage(url: str) -> tuple[Storage, ConnectionPool | None]:
    """memory:// (one process) or redis:// and rediss:// (shared), through redis-py; with
    Redis, the connection pool too, ours to close at shutdown."""
    if url == "memory://":
        return MemoryStorage(), None
    # A connection idle over a second is pinged first, so one left broken by a Redis
    # restart is replaced instead of failing the next request.
    pool = ConnectionPool.from_url(
        url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=1
    )
    storage = RedisStorage(
        f"async+{url}",
        implementation="redispy",
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
        # limits documents connection_pool but types its options as scalars.
        connection_pool=pool,  # type: ignore[arg-type]
    )
    return storage, pool


class Throttle:
    """Every attempt is counted as it starts (one atomic hit), so concurrent guesses cannot
    all pass a check made before any of them failed; a success clears the count.

    The sliding-window counter weighs the previous window's count by how much of it
    still overlaps, so a burst across a window boundary is still counted.
    """

    def __init__(
        self, *, storage_url: str, max_failures: int, window_seconds: int, ip_limit: str
    ) -> None:
        self._storage, self._pool = limits_storage(storage_url)
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._login = limits.RateLimitItemPerSecond(
            max_failures, window_seconds, namespace="login-failures"
        )
        self._per_ip = limits.parse_many(ip_limit) if ip_limit else []

    async def _hit(self, item: limits.RateLimitItem, identifier: str) -> None:
        try:
            if await self._limiter.hit(item, identifier):
                return
            stats = await self._limiter.get_window_stats(item, identifier)
        except StorageError:
            # Without its counters the throttle cannot protect anyone: fail closed.
            raise ServiceUnavailable() from None
        raise Throttled(retry_after=max(1, math.ceil(stats.reset_time - time.time())))

    async def client(self, ip: str | None) -> None:
        """One bucket per client IP, shared by the endpoints that take credentials."""
        if ip is not None:
            for item in self._per_ip:
                await self._hit(item, ip)

    async def login_attempt(self, email: str) -> None:
        """Count an attempt on this account before any password is verified; 429 when over."""
        await self._hit(self._login, email)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def login_succeeded(self, email: str) -> None:
        try:
            await self._limiter.clear(self._login, email)
        except StorageError:
            raise ServiceUnavailable() from None
