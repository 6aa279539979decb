"""Throttling: failed logins per account (a sliding log with reservations), requests per
client IP (the `limits` library)."""

import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Protocol

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from app.clock import Clock, system_clock
from app.errors import ServiceUnavailable, Throttled

KEY_PREFIX = "jwt-auth-api"
FAILURES_KEY = f"{KEY_PREFIX}:login-failures:"

log = logging.getLogger("app.stores.throttle")


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


class FailureLog(Protocol):
    """Failed attempts per account within a sliding window, each reserved before the verdict.

    `reserve` records a provisional failure if the account is under the limit, in one
    atomic step, so concurrent guesses cannot all pass a check made before any failed;
    it answers the seconds until the oldest entry leaves the window when it is not.
    """

    async def reserve(self, email: str, entry: str) -> float | None: ...
    async def release(self, email: str, entry: str) -> None: ...
    async def keep(self, email: str, entry: str, at: float) -> None: ...
    async def clear(self, email: str) -> None: ...


class MemoryFailureLog:
    def __init__(
        self, *, max_failures: int, window_seconds: int, clock: Clock = system_clock
    ) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window_seconds
        self._entries: dict[str, dict[str, float]] = {}
        # Handlers of one process share it; a lock makes check-and-reserve one step.
        self._lock = threading.Lock()

    async def reserve(self, email: str, entry: str) -> float | None:
        now = self._clock()
        with self._lock:
            entries = self._entries.setdefault(email, {})
            for stale in [key for key, at in entries.items() if at <= now - self._window]:
                del entries[stale]
            if len(entries) >= self._max:
                return min(entries.values()) + self._window - now
            entries[entry] = now
            return None

    async def release(self, email: str, entry: str) -> None:
        with self._lock:
            self._entries.get(email, {}).pop(entry, None)

    async def keep(self, email: str, entry: str, at: float) -> None:
        with self._lock:
            # A success may have cleared the log meanwhile: this failure still counts.
            self._entries.setdefault(email, {}).setdefault(entry, at)

    async def clear(self, email: str) -> None:
        with self._lock:
            self._entries.pop(email, None)


# KEYS[1] the account's sorted set (score: time in ms); ARGV: now_ms, window_ms, max, entry.
# The server's clock (TIME) keeps instances with skewed clocks on one timeline.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, now}
"""


class RedisFailureLog:
    def __init__(self, pool: ConnectionPool, *, max_failures: int, window_seconds: int) -> None:
        self._redis = Redis(connection_pool=pool)
        self._max = max_failures
        self._window_ms = window_seconds * 1000
        self._reserve = self._redis.register_script(_RESERVE)
        self._reserved_at: dict[str, float] = {}

    async def reserve(self, email: str, entry: str) -> float | None:
        granted, value = await self._reserve(
            keys=[FAILURES_KEY + email], args=[self._window_ms, self._max, entry]
        )
        if not granted:
            return float(value) / 1000
        self._reserved_at[entry] = float(value)
        return None

    async def release(self, email: str, entry: str) -> None:
        self._reserved_at.pop(entry, None)
        await self._redis.zrem(FAILURES_KEY + email, entry)

    async def keep(self, email: str, entry: str, at: float) -> None:
        score = self._reserved_at.pop(entry, at * 1000)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(FAILURES_KEY + email, {entry: score})
            pipe.pexpire(FAILURES_KEY + email, self._window_ms)
            await pipe.execute()

    async def clear(self, email: str) -> None:
        await self._redis.delete(FAILURES_KEY + email)


class Attempt:
    """One password check of an account: it counts only once its verdict is known."""

    def __init__(self, log: FailureLog, email: str, entry: str, clock: Clock) -> None:
        self._log = log
        self._clock = clock
        self._email = email
        self._entry = entry
        self.decided = False

    async def failed(self) -> None:
        """The verdict is a wrong password (or code): the reserved failure stays counted."""
        self.decided = True
        await _guard(self._log.keep(self._email, self._entry, self._clock()))

    async def succeeded(self) -> None:
        """The verdict is the right password: the account's count is cleared."""
        self.decided = True
        await _guard(self._log.clear(self._email))


async def _guard(work: Awaitable[None]) -> None:
    try:
        await work
    except (RedisError, StorageError):
        # Without its counters the throttle cannot protect anyone: fail closed.
        raise ServiceUnavailable() from None


class Throttle:
    """Failed attempts per account, and requests per client IP.

    A failed attempt is reserved before any password is verified (one atomic step
    that refuses past the limit), and counted only on a verdict: a wrong password
    keeps it, the right one clears the account's count, and a request that ends
    without a verdict (a 5xx: database down, argon2 queue full) releases it, so an
    outage never locks anybody out.

    The IP limit is a sliding-window counter of `limits`, which weighs the previous
    window's count by how much of it still overlaps, so a burst across a window
    boundary is still counted.
    """

    def __init__(
        self,
        *,
        storage_url: str,
        max_failures: int,
        window_seconds: int,
        ip_limit: str,
        clock: Clock = system_clock,
        mail_limit: str = "",
    ) -> None:
        self._clock = clock
        self._storage, self._pool = limits_storage(storage_url)
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._failures: FailureLog = (
            MemoryFailureLog(max_failures=max_failures, window_seconds=window_seconds, clock=clock)
            if self._pool is None
            else RedisFailureLog(
                self._pool, max_failures=max_failures, window_seconds=window_seconds
            )
        )
        self._per_ip = limits.parse_many(ip_limit) if ip_limit else []
        self._per_address = limits.parse_many(mail_limit) if mail_limit else []

    async def _hit(self, item: limits.RateLimitItem, identifier: str) -> None:
        try:
            if await self._limiter.hit(item, identifier):
                return
            stats = await self._limiter.get_window_stats(item, identifier)
        except StorageError:
            # Without its counters the throttle cannot protect anyone: fail closed.
            raise ServiceUnavailable() from None
        # `limits` keeps its windows on its own clock (time.time), so the wait is read on it.
        raise Throttled(retry_after=max(1, math.ceil(stats.reset_time - time.time())))

    async def client(self, ip: str | None) -> None:
        """One bucket per client IP, shared by the endpoints that take credentials."""
        if ip is not None:
            for item in self._per_ip:
                await self._hit(item, ip)

    async def mail_allowed(self, kind: str, email: str) -> bool:
        """Count one mail of `kind` to `email` (MAIL_PER_ADDRESS_LIMIT); False past the limit,
        and then nothing is counted. Fails closed (ServiceUnavailable) without storage."""
        identifier = f"mail:{kind}:{email}"
        try:
            for item in self._per_address:
                if not await self._limiter.test(item, identifier):
                    return False
            for item in self._per_address:
                await self._limiter.hit(item, identifier)
        except StorageError:
            raise ServiceUnavailable() from None
        return True

    @asynccontextmanager
    async def attempt(self, email: str) -> AsyncIterator[Attempt]:
        """Reserve a failed attempt of this account (Throttled when over the limit); the
        block calls `failed()` or `succeeded()` once it knows; without either, whatever
        ends the block, the reservation is released and nothing is counted.
        """
        entry = uuid.uuid4().hex
        try:
            wait = await self._failures.reserve(email, entry)
        except (RedisError, StorageError):
            raise ServiceUnavailable() from None
        if wait is not None:
            raise Throttled(retry_after=max(1, math.ceil(wait)))
        attempt = Attempt(self._failures, email, entry, self._clock)
        try:
            yield attempt
        finally:
            if not attempt.decided:
                await self._release(email, entry)

    async def clear(self, email: str) -> None:
        """Forget the account's failed attempts (a login issued tokens)."""
        await _guard(self._failures.clear(email))

    async def _release(self, email: str, entry: str) -> None:
        try:
            await self._failures.release(email, entry)
        except (RedisError, StorageError):
            # The request is failing already; the entry then expires with its window.
            log.warning("could not release a reserved login attempt")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
