"""Sessions whose access tokens must be refused at once, without a database read per request.

An access token is accepted at most one access-token lifetime plus the leeway after its
session ended, so a revoked session id is kept that long (the retention) and then
forgotten. The set is rebuilt from the database's ended-session records: at start-up, and
with Redis whenever the store has lost its data (a marker key, written in the same
MULTI as the set, is then missing). Until a rebuild has succeeded every bearer check fails
closed, and a failed rebuild is retried at most once a second per process, never once per
request.
"""

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.clock import Clock, system_clock
from app.errors import ServiceUnavailable
from app.observability import metrics

Fetch = Callable[[datetime], Awaitable[Iterable[tuple[uuid.UUID, datetime]]]]
KEY_PREFIX = "jwt-auth-api:revoked-session:"
# Present while the set in Redis is whole: written with the set, in one MULTI. Redis
# restarted empty, flushed or replaced has no marker, and every process then rebuilds.
MARKER_KEY = "jwt-auth-api:revoked-sessions-loaded"
# After a failed rebuild, bearer checks answer 503 at once for this long (no reload storm).
RELOAD_RETRY_SECONDS = 1.0
# How long a bearer check waits for a rebuild in progress before answering 503.
RELOAD_WAIT_SECONDS = 3.0
# With memory://, records of sessions ended by other processes (the CLI) are read this often.
POLL_SECONDS = 1.0
# A record is read by a poll that starts up to this long after its ended_at: its
# transaction may commit after a poll that ran while it was open.
POLL_OVERLAP_SECONDS = 60.0

log = logging.getLogger("app.stores.revocations")


class ReloadFailed(Exception):
    """The set could not be rebuilt; `dependency` names what did not answer."""

    def __init__(self, dependency: str) -> None:
        super().__init__(f"{dependency} unavailable")
        self.dependency = dependency


class RevokedSessions(Protocol):
    # Rebuilds from the database done by this process (for metrics).
    reloads: int

    @property
    def loaded(self) -> bool: ...
    async def load(self, fetch: Fetch | None = None) -> None: ...
    async def start(self) -> None: ...
    async def add(self, session_ids: Iterable[uuid.UUID]) -> None: ...
    async def contains(self, session_id: uuid.UUID) -> bool: ...
    async def poll(self) -> None: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class _Loading:
    """Rebuilding from the database: one rebuild per process at a time."""

    def __init__(
        self, ttl_seconds: int, fetch: Fetch | None = None, *, clock: Clock = system_clock
    ) -> None:
        self._clock = clock
        self._retention = ttl_seconds
        self._fetch = fetch
        self._loaded = False
        self._reload: asyncio.Task[None] | None = None
        self._failed_at: float | None = None
        self._polled_at = 0.0
        self._lost = False
        self.reloads = 0

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def load(self, fetch: Fetch | None = None) -> None:
        """Rebuild the set now (or join the rebuild in progress); ReloadFailed if it fails."""
        if fetch is not None:
            self._fetch = fetch
        if self._reload is None or self._reload.done():
            self._reload = asyncio.get_running_loop().create_task(self._rebuild())
        await asyncio.shield(self._reload)

    async def start(self) -> None:
        """At start-up: make sure the set is whole."""
        await self.load()

    async def _reload_for_request(self) -> None:
        """A bearer check found the set incomplete: rebuild it, or join the rebuild in
        progress, or answer 503 at once when the last attempt failed a moment ago."""
        running = self._reload is not None and not self._reload.done()
        if (
            not running
            and self._failed_at is not None
            and time.monotonic() - self._failed_at < RELOAD_RETRY_SECONDS
        ):
            raise ServiceUnavailable()
        try:
            await asyncio.wait_for(self.load(), RELOAD_WAIT_SECONDS)
        except (ReloadFailed, TimeoutError):
            raise ServiceUnavailable() from None

    async def _rebuild(self) -> None:
        if self._fetch is None:
            raise ReloadFailed("database")
        started = self._clock()
        try:
            since = datetime.fromtimestamp(started - self._retention, UTC)
            records = list(await self._fetch(since))
        except Exception as exc:
            self._failed_at = time.monotonic()
            log.warning("cannot rebuild the revoked-session set: the database does not answer")
            raise ReloadFailed("database") from exc
        try:
            await self._fill(records)
        except RedisError as exc:
            self._failed_at = time.monotonic()
            log.warning("cannot rebuild the revoked-session set: the revocation store is down")
            raise ReloadFailed("revocation store") from exc
        self._failed_at = None
        self._loaded = True
        self._polled_at = started
        self.reloads += 1
        metrics.revocation_reload()
        # One line per rebuild; a warning when the store had lost its data.
        log.log(
            logging.WARNING if self._lost else logging.INFO,
            "revoked-session set rebuilt from the database%s: %d ended sessions (rebuild %d "
            "of this process)",
            " after the revocation store lost its data" if self._lost else "",
            len(records),
            self.reloads,
        )
        self._lost = False

    async def _fill(self, records: list[tuple[uuid.UUID, datetime]]) -> None:
        raise NotImplementedError

    async def poll(self) -> None:
        """Read records of sessions that other processes ended (memory:// only)."""


class MemoryRevokedSessions(_Loading):
    """In this process only: with memory:// storage the service runs one process, and reads
    the records of sessions ended elsewhere (the CLI) every second."""

    def __init__(
        self, ttl_seconds: int, fetch: Fetch | None = None, *, clock: Clock = system_clock
    ) -> None:
        super().__init__(ttl_seconds, fetch, clock=clock)
        self._until: dict[uuid.UUID, float] = {}

    def _keep(self, session_id: uuid.UUID, until: float) -> None:
        now = self._clock()
        if len(self._until) > 1024:
            self._until = {sid: end for sid, end in self._until.items() if end > now}
        self._until[session_id] = max(until, self._until.get(session_id, 0.0))

    async def _fill(self, records: list[tuple[uuid.UUID, datetime]]) -> None:
        for session_id, ended_at in records:
            self._keep(session_id, ended_at.timestamp() + self._retention)

    async def add(self, session_ids: Iterable[uuid.UUID]) -> None:
        until = self._clock() + self._retention
        for session_id in session_ids:
            self._keep(session_id, until)

    async def contains(self, session_id: uuid.UUID) -> bool:
        if not self._loaded:
            await self._reload_for_request()
        until = self._until.get(session_id)
        return until is not None and until > self._clock()

    async def poll(self) -> None:
        if not self._loaded or self._fetch is None:
            await self.load()
            return
        started = self._clock()
        since = max(self._polled_at - POLL_OVERLAP_SECONDS, started - self._retention)
        await self._fill(list(await self._fetch(datetime.fromtimestamp(since, UTC))))
        self._polled_at = started

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        if self._reload is not None:
            self._reload.cancel()


class RedisRevokedSessions(_Loading):
    """Shared by every process and instance: one key per session, expiring with the tokens,
    and the marker that says the set is whole."""

    def __init__(
        self, url: str, ttl_seconds: int, fetch: Fetch | None = None, *, clock: Clock = system_clock
    ) -> None:
        super().__init__(ttl_seconds, fetch, clock=clock)
        self._redis = Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=1
        )
        self._waiting: list[tuple[str, asyncio.Future[tuple[bool, bool]]]] = []
        self._lookups: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """The set in Redis outlives this process: rebuild only when its marker is missing."""
        try:
            whole = await self._redis.exists(MARKER_KEY)
        except RedisError as exc:
            raise ReloadFailed("revocation store") from exc
        if whole:
            self._loaded = True
        else:
            await self.load()

    async def _fill(self, records: list[tuple[uuid.UUID, datetime]]) -> None:
        now = self._clock()
        # One MULTI: the marker is never there without the set (the contract's atomic step).
        async with self._redis.pipeline(transaction=True) as pipe:
            for session_id, ended_at in records:
                seconds = math.ceil(ended_at.timestamp() + self._retention - now)
                if seconds > 0:
                    pipe.set(f"{KEY_PREFIX}{session_id}", b"1", ex=seconds)
            pipe.set(MARKER_KEY, str(int(now)).encode())
            await pipe.execute()

    async def add(self, session_ids: Iterable[uuid.UUID]) -> None:
        keys = [f"{KEY_PREFIX}{session_id}" for session_id in session_ids]
        if not keys:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key, b"1", ex=self._retention)
                await pipe.execute()
        except RedisError:
            # A revocation that cannot be shared must not be reported as done.
            raise ServiceUnavailable() from None

    async def contains(self, session_id: uuid.UUID) -> bool:
        """One lookup per request, reading the marker in the same MGET; the lookups of one
        event-loop turn share that MGET, so under load a round trip serves many requests."""
        key = f"{KEY_PREFIX}{session_id}"
        for _ in range(2):
            whole, ended = await self._look_up_later(key)
            if whole:
                self._loaded = True
                return ended
            # The store lost its data: an absent key proves nothing until the set is rebuilt.
            self._loaded = False
            self._lost = True
            await self._reload_for_request()
        raise ServiceUnavailable()

    async def _look_up_later(self, key: str) -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[bool, bool]] = loop.create_future()
        self._waiting.append((key, answer))
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
            marker, *values = await self._redis.mget([MARKER_KEY, *(key for key, _ in batch)])
        except RedisError:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(ServiceUnavailable())
            return
        for (_, answer), value in zip(batch, values, strict=True):
            if not answer.done():
                answer.set_result((marker is not None, value is not None))

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
        await self._redis.aclose()


def revoked_sessions(
    storage_url: str, ttl_seconds: int, fetch: Fetch | None = None, *, clock: Clock = system_clock
) -> RevokedSessions:
    """The store for RATE_LIMIT_STORAGE_URL. `ttl_seconds` is the retention: the
    access-token lifetime plus TOKEN_LEEWAY_SECONDS. `fetch` reads the records of sessions
    ended since a time; a store without it (a command's) only adds."""
    if storage_url == "memory://":
        return MemoryRevokedSessions(ttl_seconds, fetch, clock=clock)
    return RedisRevokedSessions(storage_url, ttl_seconds, fetch, clock=clock)
