"""Declarative base, engine factory and the per-request transaction."""

import asyncio
import math
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiosqlite
import psycopg
from sqlalchemy import DateTime, Dialect, MetaData, event
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState
from sqlalchemy.types import TypeDecorator

from app.config import Settings

RV = TypeVar("RV")
if TYPE_CHECKING:
    from alembic.config import Config

SQLITE_BUSY_TIMEOUT_MS = 5000
# TCP keepalives, so that a silent split (a peer gone without a FIN or RST) is noticed.
KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend; SQLite stores naive UTC text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sync_url(database_url: str) -> URL:
    """The URL with a synchronous driver, as Alembic and the CLI use it."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite")
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    return url


def async_url(database_url: str) -> URL:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if url.get_backend_name() == "postgresql":
        # psycopg 3 serves both the sync and the asyncio engine.
        return url.set(drivername="postgresql+psycopg")
    return url


def _configure_sqlite(
    dbapi_connection: Any, _record: ConnectionPoolEntry, busy_timeout_ms: int
) -> None:
    # The driver's own lazy BEGIN lets two writers read the same row and then
    # collide with "database is locked"; we emit BEGIN IMMEDIATE ourselves
    # (SQLAlchemy's pysqlite/aiosqlite "serializable isolation" recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _run_statement(
    connection: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> tuple[Any, int, int | None, list[Any]]:
    """On aiosqlite's thread: the statement's description, row count, last row id, rows."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A statement in one call to aiosqlite's thread: open a cursor, execute, fetch the
    rows, close. SQLAlchemy's adapter makes a call of each (four), and every call costs
    a pass of the event loop and two thread switches, on the core the requests share.

    aiosqlite's queue of calls (`_execute`) and sqlite3 connection (`_conn`) are what its
    own cursors and SQLAlchemy's adapter use; `tests/test_sqlite_engine.py` counts the
    calls and runs the statements SQLAlchemy sends through this cursor.
    """

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection.driver_connection
        self._rows = deque()
        self._arraysize = 1
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:  # type: ignore[override]
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _run(self, operation: Any, parameters: Any, many: bool) -> None:
        driver = self._connection
        async with self._adapt_connection._execute_mutex:
            found = await driver._execute(_run_statement, driver._conn, operation, parameters, many)
        self._description, self._rowcount, self._lastrowid, rows = found
        self._rows = deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._run(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._run(operation, seq_of_parameters, many=True)

    async def _async_soft_close(self) -> None:
        """Nothing is left open: the rows were fetched with the statement."""

    def close(self) -> None:
        self._rows.clear()


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneTripCursor


class _OneTripDriver(AsyncAdapt_aiosqlite_dbapi):
    """aiosqlite, as SQLAlchemy adapts it, with `_OneTripCursor` for every statement."""

    def connect(self, *args: Any, **kwargs: Any) -> _OneTripConnection:
        adapted = super().connect(*args, **kwargs)
        return _OneTripConnection(self, adapted.driver_connection)


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _rollback_if_open(
    dbapi_connection: Any, _record: ConnectionPoolEntry, state: PoolResetState
) -> None:
    """The pool's reset on return, only for a transaction still open: the pool's own
    reset rolls back after every commit, one more call to aiosqlite's thread."""
    usable = state.asyncio_safe and not state.terminate_only
    if usable and dbapi_connection.driver_connection.in_transaction:
        dbapi_connection.rollback()


def install_sqlite_transactions(
    sync_engine: Engine, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> None:
    """For an aiosqlite engine created with `pool_reset_on_return=None`."""

    def configure(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        _configure_sqlite(dbapi_connection, record, busy_timeout_ms)

    event.listen(sync_engine, "connect", configure)
    event.listen(sync_engine, "begin", _begin_immediate)
    event.listen(sync_engine, "reset", _rollback_if_open)


class _PostgresConnection(psycopg.AsyncConnection[Any]):
    """psycopg, except that a cancelled operation drops its connection at once.

    On cancellation psycopg sends the server a cancel request and waits for the
    query to end, up to 10 s: on a database that stopped answering, 10 s past the
    request's deadline. A dropped connection is discarded by the pool, and the
    server ends the query itself at its statement_timeout.
    """

    async def wait(
        self,
        gen: Generator[Any, Any, RV],
        interval: float = 0.1,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg's own signature
    ) -> RV:
        try:
            return await psycopg.waiting.wait_async(
                gen, self.pgconn.socket, interval=interval, timeout=timeout
            )
        except asyncio.CancelledError:
            self.pgconn.finish()
            raise


def connect_timeout(timeout_seconds: float) -> int:
    # libpq counts whole seconds and reads anything below 2 as 2.
    return max(2, math.ceil(timeout_seconds))


def postgres_connect_args(timeout_seconds: float, *, statements: bool) -> dict[str, Any]:
    """psycopg options bounding each step by DATABASE_TIMEOUT_SECONDS.

    Connecting (connect_timeout), and a silent split of an open connection
    (keepalives, and tcp_user_timeout for data sent but never acknowledged).
    With `statements`, also each statement on the server (statement_timeout);
    migrations go without: a table rebuild may take longer.
    """
    timeout_ms = math.ceil(timeout_seconds * 1000)
    args: dict[str, Any] = {
        "connect_timeout": connect_timeout(timeout_seconds),
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE_SECONDS,
        "keepalives_interval": KEEPALIVE_INTERVAL_SECONDS,
        "keepalives_count": KEEPALIVE_COUNT,
    }
    if statements:
        args["tcp_user_timeout"] = timeout_ms
        args["options"] = f"-c statement_timeout={timeout_ms}"
    return args


def _with_url_options(url: URL, args: dict[str, Any]) -> dict[str, Any]:
    """Keep the server options a DATABASE_URL may carry (`?options=-c search_path=x`)."""
    given = url.query.get("options")
    if isinstance(given, str) and "options" in args:
        args["options"] = f"{given} {args['options']}"
    return args


def create_engine_for(settings: Settings) -> AsyncEngine:
    url = async_url(settings.DATABASE_URL)
    options: dict[str, Any] = {}
    timeout = settings.DATABASE_TIMEOUT_SECONDS
    if url.get_backend_name() == "sqlite":
        # SQLite runs one writer at a time (BEGIN IMMEDIATE for every transaction), so
        # one connection loses nothing, and requests queue on the pool, handed over at
        # once, instead of in SQLite's busy handler, which polls with growing sleeps.
        options |= {
            "pool_size": 1,
            "max_overflow": 0,
            "pool_timeout": timeout,
            # Replaced by _rollback_if_open (install_sqlite_transactions).
            "pool_reset_on_return": None,
            "module": _OneTripDriver(aiosqlite, sqlite3),
        }
    if url.get_backend_name() == "postgresql":
        # A local SQLite file never drops a connection: pinging it would only cost a round trip.
        options |= {
            "pool_pre_ping": settings.DATABASE_POOL_PRE_PING,
            "pool_size": settings.DATABASE_POOL_SIZE,
            "max_overflow": settings.DATABASE_MAX_OVERFLOW,
            "pool_recycle": settings.DATABASE_POOL_RECYCLE_SECONDS,
            "pool_timeout": timeout,
            "connect_args": _with_url_options(url, postgres_connect_args(timeout, statements=True))
            | {"async_creator_fn": _PostgresConnection.connect},
        }
    engine = create_async_engine(url, **options)
    if url.get_backend_name() == "sqlite":
        install_sqlite_transactions(engine.sync_engine, math.ceil(timeout * 1000))
    return engine


def migrations_location() -> Path:
    """The Alembic scripts: inside the installed package (a wheel ships alembic/ as
    app.migrations), else the checkout's top-level alembic/ (an editable install)."""
    packaged = Path(str(files("app") / "migrations"))
    if (packaged / "env.py").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "alembic"


def alembic_config(database_url: str) -> "Config":
    """Alembic's configuration for `database_url`, without alembic.ini or the working directory."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_location()))
    config.attributes["database_url"] = database_url
    return config


@cache
def _migration_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(every known revision, the heads) of the migrations this code ships."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    known = frozenset(revision.revision for revision in script.walk_revisions())
    return known, frozenset(script.get_heads())


def expected_heads() -> frozenset[str]:
    """The revisions a database is at once migrated by this code."""
    return _migration_revisions()[1]


def schema_state_of(current: set[str]) -> Literal["ok", "not migrated"]:
    """Whether a database at the revisions `current` has every table this code needs."""
    known, heads = _migration_revisions()
    if not current:
        return "not migrated"
    # A revision this code does not know is newer (a rolling upgrade has migrated):
    # the tables this code needs are there. A known one that is not a head is behind.
    if any(revision in known and revision not in heads for revision in current):
        return "not migrated"
    if current <= known and current != heads:  # pragma: no cover - several branches
        return "not migrated"
    return "ok"


async def schema_state(engine: AsyncEngine) -> Literal["ok", "not migrated"]:
    """ "ok" when the database is migrated to this code's head; errors of the connection
    itself (unreachable, timed out) propagate to the caller."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as connection:
        current = await connection.run_sync(
            lambda sync: set(MigrationContext.configure(sync).get_current_heads())
        )
    return schema_state_of(current)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def release_before_slow_work(db: AsyncSession) -> None:
    """End a transaction that has only read, before argon2 runs for tens of milliseconds.

    Neither a pooled connection nor SQLite's write lock (taken by BEGIN
    IMMEDIATE at the first statement) is then held while the hash is computed,
    so a flood of logins cannot starve refreshes of connections or queue every
    writer behind the hashes. The next statement begins a new transaction.
    """
    if db.new or db.dirty or db.deleted:
        raise RuntimeError("release_before_slow_work after a write")
    await db.commit()


@asynccontextmanager
async def database_work(
    sessionmaker: async_sessionmaker[AsyncSession], timeout_seconds: float
) -> AsyncIterator[AsyncSession]:
    """A session whose work must end within `timeout_seconds` (TimeoutError otherwise).

    Past the deadline its connection is dropped, not rolled back nor returned to the
    pool: on a database that stopped answering, a ROLLBACK would wait as long as the
    statement it ends.
    """
    db = sessionmaker()
    deadline = asyncio.timeout(timeout_seconds)
    try:
        async with deadline:
            try:
                yield db
            except asyncio.CancelledError:
                if deadline.expired():
                    await db.invalidate()
                raise
            await db.close()
    except TimeoutError:
        await db.invalidate()
        raise
    finally:
        await db.close()
