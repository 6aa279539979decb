"""The SQLite engine's transactions: BEGIN IMMEDIATE, and no call to the driver's thread
that a transaction does not need (aiosqlite runs each call on a thread of its own, so
each costs a pass of the event loop). On a SQLite file of their own, whatever
DATABASE_URL the run uses."""

import asyncio
import functools
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import create_engine_for, create_sessionmaker

# The aiosqlite calls SQLAlchemy's adapter makes, each one trip to the driver's thread.
DRIVER_CALLS = [
    (aiosqlite.Connection, "cursor"),
    (aiosqlite.Connection, "execute"),
    (aiosqlite.Connection, "commit"),
    (aiosqlite.Connection, "rollback"),
    (aiosqlite.Cursor, "execute"),
    (aiosqlite.Cursor, "fetchall"),
    (aiosqlite.Cursor, "close"),
]


@pytest.fixture
def sqlite_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={"DATABASE_URL": f"sqlite:///{tmp_path}/engine.db", "DATABASE_TIMEOUT_SECONDS": 0.3}
    )


@pytest.fixture
def driver_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the aiosqlite calls made while the test runs, in order."""
    made: list[str] = []
    for owner, name in DRIVER_CALLS:
        method = getattr(owner, name)

        def counted(
            *args: Any, _method: Callable[..., Any] = method, _name: str = name, **kwargs: Any
        ) -> Any:
            made.append(_name)
            return _method(*args, **kwargs)

        monkeypatch.setattr(owner, name, functools.wraps(method)(counted))
    return made


def run(settings: Settings, work: Callable[[AsyncEngine], Awaitable[None]]) -> None:
    async def main() -> None:
        engine = create_engine_for(settings)
        try:
            await work(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_a_committed_transaction_makes_no_call_it_does_not_need(
    sqlite_settings: Settings, driver_calls: list[str]
) -> None:
    async def one_transaction(engine: AsyncEngine) -> None:
        async with create_sessionmaker(engine)() as db:
            await db.execute(text("SELECT 1"))  # connects outside the count
            await db.commit()
            driver_calls.clear()
            assert (await db.execute(text("SELECT 2"))).scalar_one() == 2
            await db.commit()

    run(sqlite_settings, one_transaction)

    # BEGIN IMMEDIATE in one call, the statement in four (SQLAlchemy's cursor), the
    # COMMIT; no ROLLBACK from the pool after the COMMIT.
    assert driver_calls == ["execute", "cursor", "execute", "fetchall", "close", "commit"]


def test_a_connection_returned_in_a_transaction_releases_the_write_lock(
    sqlite_settings: Settings,
) -> None:
    database = Path(sqlite_settings.DATABASE_URL.removeprefix("sqlite:///"))

    async def leave_a_transaction_open(engine: AsyncEngine) -> None:
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert isinstance(driver, aiosqlite.Connection)
            # Behind SQLAlchemy's back: the pool's reset is all that can end it.
            await driver.execute("BEGIN IMMEDIATE")
            assert driver.in_transaction
        # The connection is back in the pool, still open.
        probe = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")  # "database is locked" if the lock were kept
            probe.rollback()
        finally:
            probe.close()

    run(sqlite_settings, leave_a_transaction_open)


def test_a_write_lock_held_past_the_timeout_is_an_operational_error(
    sqlite_settings: Settings,
) -> None:
    """The BEGIN IMMEDIATE that waits in vain raises what a statement would: the API's
    handlers answer it 503 (tests/api/test_database_faults.py)."""
    database = Path(sqlite_settings.DATABASE_URL.removeprefix("sqlite:///"))
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def begin(engine: AsyncEngine) -> None:
        async with create_sessionmaker(engine)() as db:
            with pytest.raises(OperationalError, match="database is locked"):
                await db.execute(text("SELECT 1"))

    try:
        run(sqlite_settings, begin)
    finally:
        holder.rollback()
        holder.close()
