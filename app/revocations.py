"""Sessions whose access tokens must be refused at once, without a database read per request."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime


class RevokedSessions:
    """Session ids revoked within the last access-token lifetime.

    An access token lives at most `ttl_seconds`, so a revoked id can be
    forgotten after that. The set lives in this process: with memory storage
    the service runs one process. It is reloaded from the database at start-up;
    until that has succeeded every bearer check fails closed.
    """

    def __init__(self, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self._until: dict[uuid.UUID, float] = {}
        self._loaded = False
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def load(
        self, fetch: Callable[[datetime], Awaitable[Iterable[tuple[uuid.UUID, datetime]]]]
    ) -> None:
        """Fill the set from `fetch(since)`: (session id, revoked at) pairs."""
        async with self._lock:
            if self._loaded:
                return
            since = datetime.fromtimestamp(time.time() - self._ttl).astimezone()
            for session_id, revoked_at in await fetch(since):
                self._until[session_id] = max(
                    self._until.get(session_id, 0.0), revoked_at.timestamp() + self._ttl
                )
            self._loaded = True

    async def add(self, session_ids: Iterable[uuid.UUID]) -> None:
        now = time.time()
        if len(self._until) > 1024:
            self._until = {sid: until for sid, until in self._until.items() if until > now}
        for session_id in session_ids:
            self._until[session_id] = now + self._ttl

    async def contains(self, session_id: uuid.UUID) -> bool:
        until = self._until.get(session_id)
        return until is not None and until > time.time()
