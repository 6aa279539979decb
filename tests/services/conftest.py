"""Service tests call the use cases in-process on the real migrated test database, each
test's work inside one event loop with a runtime built and closed in it."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.observability.audit import Audit
from app.runtime import Runtime
from tests.faults.redis_server import redis_server

# A private redis-server, for the tests of what a session's end does to the shared set.
__all__ = ["redis_server"]

T = TypeVar("T")
AUDIT = Audit(request_id=None, ip=None, user_agent=None)


class Services:
    """Runs `work(runtime)` in a fresh event loop with a runtime of the test's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, work: Callable[[Runtime], Awaitable[T]]) -> T:
        async def main() -> T:
            runtime = Runtime.build(self.settings)
            await runtime.load_revoked_sessions()
            try:
                return await work(runtime)
            finally:
                await runtime.close()

        return asyncio.run(main())


@asynccontextmanager
async def transaction(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    """One unit of work, as a request's: committed when the block ends, rolled back on error."""
    async with runtime.sessionmaker() as db:
        try:
            yield db
        except BaseException:
            await db.rollback()
            raise
        await db.commit()


@pytest.fixture
def services(settings: Settings) -> Services:
    return Services(settings)
