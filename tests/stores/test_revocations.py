"""The revoked-session stores: memory:// in one process, redis:// shared, both rebuilt
from the ended-session records (here a plain list standing in for the database)."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from app.errors import ServiceUnavailable
from app.stores.revocations import (
    KEY_PREFIX,
    MARKER_KEY,
    MemoryRevokedSessions,
    RedisRevokedSessions,
    ReloadFailed,
    RevokedSessions,
)
from tests.faults.redis_server import RedisServer

T = TypeVar("T")
RETENTION = 60


class Records:
    """Ended-session records as the database would answer them; counts the reads."""

    def __init__(self) -> None:
        self.rows: list[tuple[uuid.UUID, datetime]] = []
        self.reads = 0
        self.down = False

    def end(self, seconds_ago: float = 0) -> uuid.UUID:
        session_id = uuid.uuid4()
        self.rows.append((session_id, datetime.now(UTC) - timedelta(seconds=seconds_ago)))
        return session_id

    async def __call__(self, since: datetime) -> Iterable[tuple[uuid.UUID, datetime]]:
        self.reads += 1
        if self.down:
            raise ConnectionError("database down")
        return [row for row in self.rows if row[1] >= since]


def run(work: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(work())  # type: ignore[arg-type]


def both(redis_url: str | None, records: Records) -> RevokedSessions:
    if redis_url is None:
        return MemoryRevokedSessions(RETENTION, records)
    return RedisRevokedSessions(redis_url, RETENTION, records)


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "memory":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


def test_an_added_session_is_revoked_and_another_is_not(store_url: str | None) -> None:
    records = Records()

    async def work() -> tuple[bool, bool]:
        store = both(store_url, records)
        await store.start()
        ended = uuid.uuid4()
        await store.add([ended])
        try:
            return await store.contains(ended), await store.contains(uuid.uuid4())
        finally:
            await store.close()

    assert run(work) == (True, False)


def test_a_rebuild_keeps_sessions_ended_within_the_retention_only(store_url: str | None) -> None:
    records = Records()
    recent = records.end(seconds_ago=RETENTION - 10)
    old = records.end(seconds_ago=RETENTION + 10)

    async def work() -> tuple[bool, bool, int]:
        store = both(store_url, records)
        await store.start()
        try:
            return await store.contains(recent), await store.contains(old), store.reloads
        finally:
            await store.close()

    assert run(work) == (True, False, 1)


def test_a_store_whose_first_rebuild_failed_fails_closed_without_a_read_per_check(
    store_url: str | None,
) -> None:
    records = Records()
    records.down = True
    ended = records.end()

    async def work() -> tuple[int, int, bool]:
        store = both(store_url, records)
        with pytest.raises(ReloadFailed) as failed:
            await store.start()
        assert failed.value.dependency == "database"
        refused = 0
        for _ in range(50):
            try:
                await store.contains(ended)
            except ServiceUnavailable:
                refused += 1
        reads_while_down = records.reads
        records.down = False
        await asyncio.sleep(1.1)
        try:
            return refused, reads_while_down, await store.contains(ended)
        finally:
            await store.close()

    refused, reads_while_down, revoked_after = run(work)
    assert refused == 50
    assert reads_while_down <= 2
    assert revoked_after is True


def test_the_memory_store_reads_sessions_other_processes_ended_when_it_polls() -> None:
    records = Records()

    async def work() -> tuple[bool, bool]:
        store = MemoryRevokedSessions(RETENTION, records)
        await store.start()
        ended_elsewhere = records.end()
        before = await store.contains(ended_elsewhere)
        await store.poll()
        return before, await store.contains(ended_elsewhere)

    assert run(work) == (False, True)


def test_redis_keeps_a_revoked_id_for_the_retention(redis_server: RedisServer) -> None:
    ended = uuid.uuid4()

    async def work() -> None:
        store = RedisRevokedSessions(redis_server.url, RETENTION, Records())
        await store.start()
        await store.add([ended])
        await store.close()

    run(work)
    with redis_server.client() as client:
        ttl = client.ttl(f"{KEY_PREFIX}{ended}")
    assert RETENTION - 5 <= ttl <= RETENTION


def test_redis_with_its_marker_is_not_rebuilt_at_start_up(redis_server: RedisServer) -> None:
    records = Records()

    async def start_one() -> int:
        store = RedisRevokedSessions(redis_server.url, RETENTION, records)
        await store.start()
        await store.close()
        return store.reloads

    assert run(start_one) == 1
    assert run(start_one) == 0
    assert records.reads == 1


def test_a_flushed_redis_is_rebuilt_once_and_never_answers_not_revoked_meanwhile(
    redis_server: RedisServer,
) -> None:
    records = Records()
    ended = records.end()

    async def work() -> tuple[list[bool], int]:
        store = RedisRevokedSessions(redis_server.url, RETENTION, records)
        await store.start()
        redis_server.flushall()
        try:
            answers = await asyncio.gather(*(store.contains(ended) for _ in range(20)))
            return list(answers), store.reloads
        finally:
            await store.close()

    answers, reloads = run(work)
    assert answers == [True] * 20
    assert reloads == 2
    assert records.reads == 2
    with redis_server.client() as client:
        assert client.exists(MARKER_KEY)


def test_redis_down_answers_503_without_reading_the_database(redis_server: RedisServer) -> None:
    records = Records()

    async def work() -> int:
        store = RedisRevokedSessions(redis_server.url, RETENTION, records)
        await store.start()
        redis_server.stop()
        refused = 0
        for _ in range(5):
            try:
                await store.contains(uuid.uuid4())
            except ServiceUnavailable:
                refused += 1
        await store.close()
        return refused

    assert run(work) == 5
    assert records.reads == 1


def test_concurrent_redis_checks_share_one_mget_with_the_marker(
    redis_server: RedisServer,
) -> None:
    ended = uuid.uuid4()

    async def work() -> list[bool]:
        store = RedisRevokedSessions(redis_server.url, RETENTION, Records())
        await store.start()
        await store.add([ended])
        with redis_server.client() as client:
            client.config_resetstat()
        try:
            return list(
                await asyncio.gather(
                    *(store.contains(ended) for _ in range(10)), store.contains(uuid.uuid4())
                )
            )
        finally:
            await store.close()

    started = time.monotonic()
    answers = run(work)
    assert answers == [True] * 10 + [False]
    with redis_server.client() as client:
        stats = client.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] == 1
    assert time.monotonic() - started < 10
