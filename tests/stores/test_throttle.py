"""The throttle store, memory:// and redis:// alike: failed attempts per account, requests
per client IP, and failing closed when Redis is gone."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from app.errors import ServiceUnavailable, Throttled
from app.stores.throttle import Throttle
from tests.faults.redis_server import RedisServer

T = TypeVar("T")
MAX_FAILURES = 2


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flushall()
    return server.url


def run(storage: str, work: Callable[[Throttle], Awaitable[T]], ip_limit: str = "") -> T:
    async def main() -> T:
        throttle = Throttle(
            storage_url=storage, max_failures=MAX_FAILURES, window_seconds=900, ip_limit=ip_limit
        )
        try:
            return await work(throttle)
        finally:
            await throttle.close()

    return asyncio.run(main())


async def _fail(throttle: Throttle, email: str = "ada@example.com") -> None:
    async with throttle.attempt(email) as attempt:
        await attempt.failed()


def test_an_account_past_its_failures_is_throttled_for_the_rest_of_the_window(
    storage: str,
) -> None:
    async def work(throttle: Throttle) -> int:
        for _ in range(MAX_FAILURES):
            await _fail(throttle)
        await _fail(throttle, "other@example.com")
        with pytest.raises(Throttled) as throttled:
            await _fail(throttle)
        return throttled.value.retry_after

    assert 890 <= run(storage, work) <= 900


def test_a_success_clears_the_account(storage: str) -> None:
    async def work(throttle: Throttle) -> None:
        for _ in range(MAX_FAILURES - 1):
            await _fail(throttle)
        async with throttle.attempt("ada@example.com") as attempt:
            await attempt.succeeded()
        for _ in range(MAX_FAILURES):
            await _fail(throttle)

    run(storage, work)


def test_a_client_address_past_the_ip_limit_is_throttled_and_others_are_not(storage: str) -> None:
    async def work(throttle: Throttle) -> int:
        await throttle.client(None)
        for _ in range(3):
            await throttle.client("192.0.2.1")
        await throttle.client("192.0.2.2")
        with pytest.raises(Throttled) as throttled:
            await throttle.client("192.0.2.1")
        return throttled.value.retry_after

    assert 1 <= run(storage, work, ip_limit="3/minute") <= 60


def test_without_redis_the_throttle_fails_closed(redis_server: RedisServer) -> None:
    url = redis_server.url

    async def work(throttle: Throttle) -> None:
        redis_server.stop()
        try:
            with pytest.raises(ServiceUnavailable):
                await _fail(throttle)
            with pytest.raises(ServiceUnavailable):
                async with throttle.attempt("ada@example.com") as attempt:
                    await attempt.succeeded()
            with pytest.raises(ServiceUnavailable):
                await throttle.client("192.0.2.1")
        finally:
            redis_server.start()

    run(url, work, ip_limit="3/minute")
