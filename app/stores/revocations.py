"""Sessions whose access tokens must be refused at once, without a database read per request.

An access token lives at most one access-token lifetime, so a revoked session id
is kept that long and then forgotten. The set is refilled from the database at
start-up; until that has succeeded every bearer check fails closed.
"""

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.errors import ServiceUnavailable

Fetch = Callable[[datetime], Awaitable[Iterable[tuple[uuid.UUID, datetime]]]]
KEY_PREFIX = "jwt-auth-api:revoked-session:"


class RevokedSessions(Protocol):
    @property
    def loaded(self) -> bool: ...
    async def load(self, fetch: Fetch) -> None: ...
    async def add(self, session_ids: Iterable[uuid.UUID]) -> None: ...
    async def contains(self, session_id: uuid.UUID) -> bool: ...
    async def close(self) -> None: ...


class _Loading:
    """Refilling from the database, once per process."""

    def __init__(self, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self._loaded = False
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def load(self, fetch: Fetch) -> None:
        async with self._lock:
            if self._loaded:
                return
            since = datetime.fromtimestamp(time.time() - self._ttl, UTC)
            for session_id, revoked_at in await fetch(since):
                await self._keep(session_id, revoked_at.timestamp() + self._ttl)
            self._loaded = True

    async def add(self, session_ids: Iterable[uuid.UUID]) -> None:
        until = time.time() + self._ttl
        for session_id in session_ids:
            await self._keep(session_id, until)

    async def _keep(self, session_id: uuid.UUID, until: float) -> None:
        raise NotImplementedError


class MemoryRevokedSessions(_Loading):
    """In this process only: with memory:// storage the service runs one process."""

    def __init__(self, ttl_seconds: int) -> None:
        super().__init__(ttl_seconds)
        self._until: dict[uuid.UUID, float] = {}

    async def _keep(self, session_id: uuid.UUID, until: float) -> None:
        now = time.time()
        if len(self._until) > 1024:
            self._until = {sid: end for sid, end in self._until.items() if end > now}
        self._until[session_id] = max(until, self._until.get(session_id, 0.0))

    async def contains(self, session_id: uuid.UUID) -> bool:
        until = self._until.get(session_id)
        return until is not None and until > time.time()

    async def close(self) -> None:
        pass


class RedisRevokedSessions(_Loading):
    """Shared by every process and instance: one key per session, expiring with the tokens."""

    def __init__(self, url: str, ttl_seconds: int) -> None:
        super().__init__(ttl_seconds)
        self._redis = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._waiting: list[tuple[str, asyncio.Future[bool]]] = []
        self._lookups: set[asyncio.Task[None]] = set()

    async def _keep(self, session_id: uuid.UUID, until: float) -> None:
        seconds = math.ceil(until - time.time())
        if seconds > 0:
            try:
                await self._redis.set(f"{KEY_PREFIX}{session_id}", b"1", ex=seconds)
            except RedisError:
                # A revocation that cannot be shared must not be reported as done.
                raise ServiceUnavailable() from None

    async def contains(self, session_id: uuid.UUID) -> bool:
        """One lookup per request; the lookups of one event-loop turn share one MGET, so
        under load a round trip serves many requests."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((f"{KEY_PREFIX}{session_id}", answer))
        if len(self._waiting) == 1:
            loop.call_soon(self._start_lookup)
        return await answer

    def _start_lookup(self) -> None:
        task = asyncio.get_running_loop().create_task(self._look_up())
        self._lookups.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._lookups.discard)

    async def _look_up(self) -> None:
        batch, self._waiting = self._waiting, []
        try:
            values = await self._redis.mget([key for key, _ in batch])
        except RedisError:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(ServiceUnavailable())
            return
        for (_, answer), value in zip(batch, values, strict=True):
            if not answer.done():
                answer.set_result(value is not None)

    async def close(self) -> None:
        await self._redis.aclose()


def revoked_sessions(storage_url: str, ttl_seconds: int) -> RevokedSessions:
    if storage_url == "memory://":
        return MemoryRevokedSessions(ttl_seconds)
    return RedisRevokedSessions(storage_url, ttl_seconds)
