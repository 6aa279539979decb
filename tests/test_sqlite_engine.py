"""The SQLite engine's transactions: BEGIN IMMEDIATE, and no call to the driver's thread
that a transaction does not need (aiosqlite runs each call on a thread of its own, so
each costs a pass of the event loop). On a SQLite file of their own, whatever
DATABASE_URL the run uses."""

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import create_engine_for, create_sessionmaker


@pytest.fixture
def sqlite_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={"DATABASE_URL": f"sqlite:///{tmp_path}/engine.db", "DATABASE_TIMEOUT_SECONDS": 0.3}
    )


@pytest.fixture
def driver_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The functions sent to aiosqlite's thread while the test runs, in order: its
    `_execute` queue is where every call of its API goes."""
    made: list[str] = []
    queue: Callable[..., Awaitable[Any]] = aiosqlite.Connection._execute

    async def counted(
        connection: aiosqlite.Connection, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        made.append(fn.__name__)
        return await queue(connection, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
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
        made.extend(driver_calls)

    made: list[str] = []
    run(sqlite_settings, one_transaction)

    # One call per statement (BEGIN IMMEDIATE, the SELECT with its rows), the COMMIT; no
    # ROLLBACK from the pool after the COMMIT.
    assert made == ["_run_statement", "_run_statement", "commit"]


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


def test_statements_through_the_one_call_cursor_answer_as_sqlite_does(
    sqlite_settings: Settings,
) -> None:
    """Rows, row counts, many rows in one statement, RETURNING, and errors as SQLAlchemy's
    exceptions: the connection stays usable after one."""

    async def statements(engine: AsyncEngine) -> None:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                "CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"
            )
            await connection.execute(
                text("INSERT INTO things (name) VALUES (:name)"),
                [{"name": "a"}, {"name": "b"}, {"name": "c"}],
            )
            renamed = await connection.execute(
                text("UPDATE things SET name = name || '!' WHERE name != 'a'")
            )
            assert renamed.rowcount == 2
            added = await connection.execute(
                text("INSERT INTO things (name) VALUES ('d') RETURNING id, name")
            )
            assert added.one() == (4, "d")
            names = await connection.execute(text("SELECT name FROM things ORDER BY id"))
            assert names.scalars().all() == ["a", "b!", "c!", "d"]
            assert (await connection.execute(text("SELECT 1 WHERE 0"))).all() == []
        async with engine.begin() as connection:
            with pytest.raises(IntegrityError, match="UNIQUE"):
                await connection.execute(text("INSERT INTO things (name) VALUES ('a')"))
        async with engine.connect() as connection:
            count = await connection.scalar(text("SELECT count(*) FROM things"))
            assert count == 4

    run(sqlite_settings, statements)
