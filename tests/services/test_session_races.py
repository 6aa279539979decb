"""Ending a session while a rotation of it is in flight: the child must end with its family.

Deterministic, synchronised by the database's own locks, never by a sleep: the rotation
holds its transaction open (its parent spent, its child inserted, nothing committed) and
the revocation starts on a connection of its own.

- PostgreSQL (READ COMMITTED): the test waits until the server reports the revocation
  blocked by the rotation's backend (pg_blocking_pids), then commits the rotation. The
  waiting UPDATE sees the spent parent but not the child, which `_revoke` must still find.
- SQLite: one writer at a time. The test shows the rotation holding the write lock (a
  probe's BEGIN IMMEDIATE is refused at once), so the revocation, whose every transaction
  is BEGIN IMMEDIATE, cannot interleave: it runs whole after the rotation commits.
"""

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import create_engine_for, create_sessionmaker
from app.models import RefreshToken
from app.observability.audit import Audit
from app.runtime import Runtime
from app.services import sessions
from app.stores.revocations import MemoryRevokedSessions
from tests.factories import login, make_user

# Generous: the machine may be loaded. Only a broken lock makes a test wait this long.
LOCK_WAIT_DEADLINE_SECONDS = 30
AUDIT = Audit(request_id=None, ip=None, user_agent=None)

Revoker = Callable[[AsyncSession, str, int, MemoryRevokedSessions], Awaitable[None]]


async def logout(
    db: AsyncSession, token: str, user_id: int, revoked: MemoryRevokedSessions
) -> None:
    await sessions.end(db, refresh_token=token, revoked=revoked, now=_now(), audit=AUDIT)


async def logout_all(
    db: AsyncSession, token: str, user_id: int, revoked: MemoryRevokedSessions
) -> None:
    await sessions.end_all(db, user_id=user_id, revoked=revoked, now=_now())


async def delete_session(
    db: AsyncSession, token: str, user_id: int, revoked: MemoryRevokedSessions
) -> None:
    [session_id] = await db.scalars(
        select(RefreshToken.session_id).where(RefreshToken.user_id == user_id).limit(1)
    )
    await sessions.end_one(
        db, user_id=user_id, session_id=session_id, revoked=revoked, now=_now(), audit=AUDIT
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.mark.parametrize(
    "revoke",
    [
        # RFC 7009 §2.2 and RFC 9700 §4.14.2: logout ends the whole family.
        pytest.param(logout, id="logout"),
        # Logout-all and password change end every family of the user.
        pytest.param(logout_all, id="logout-all"),
        # ASVS 5.0 7.5.2: the user ends one session from the sessions list.
        pytest.param(delete_session, id="delete-session"),
    ],
)
def test_a_session_ended_during_a_rotation_also_ends_the_rotated_child(
    client: TestClient, db: Session, settings: Settings, revoke: Revoker
) -> None:
    user = make_user(db)
    pair = login(client)
    runtime = Runtime.build(settings)
    revoked = MemoryRevokedSessions(settings.TOKEN_ACCESS_TTL_SECONDS)

    async def race() -> None:
        # Two engines: with SQLite's one-connection pool two sessions of one engine would
        # queue on the pool, and the revocation would never reach the database's lock.
        rotating_engine = create_engine_for(settings)
        revoking_engine = create_engine_for(settings)
        try:
            async with (
                create_sessionmaker(rotating_engine)() as rotating,
                create_sessionmaker(revoking_engine)() as revoking,
            ):
                await sessions.rotate(
                    rotating,
                    issuer=runtime.issuer,
                    refresh_token=pair["refresh_token"],
                    client=sessions.Client.of("127.0.0.1", "racer"),
                    revoked=revoked,
                    now=_now(),
                    audit=AUDIT,
                )
                postgres = rotating_engine.dialect.name == "postgresql"
                if postgres:
                    rotator_pid = await rotating.scalar(text("SELECT pg_backend_pid()"))
                    revoker_pid = await revoking.scalar(text("SELECT pg_backend_pid()"))
                else:
                    _assert_the_write_lock_is_held(settings.DATABASE_URL)

                async def end() -> None:
                    await revoke(revoking, pair["refresh_token"], user.id, revoked)
                    await revoking.commit()

                ending = asyncio.create_task(end())
                if postgres:
                    await _blocked_by(
                        create_sessionmaker(revoking_engine), revoker_pid, rotator_pid, ending
                    )
                await rotating.commit()
                await ending
        finally:
            await rotating_engine.dispose()
            await revoking_engine.dispose()
            await runtime.close()

    asyncio.run(race())

    rows = db.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)).all()
    assert len(rows) == 2, "the rotation issued its child"
    assert all(row.revoked_at is not None for row in rows), [
        (row.id, row.spent_at, row.revoked_at) for row in rows
    ]
    assert len({row.session_id for row in rows}) == 1


def _assert_the_write_lock_is_held(database_url: str) -> None:
    """SQLite: another writer is refused while the rotation is open, so none interleaves."""
    probe = sqlite3.connect(make_url(database_url).database or "", timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            probe.execute("BEGIN IMMEDIATE")
    finally:
        probe.close()


async def _blocked_by(
    sessionmaker: async_sessionmaker[AsyncSession],
    waiter_pid: int,
    holder_pid: int,
    waiter: asyncio.Task[None],
) -> None:
    """PostgreSQL: return once the server reports `waiter_pid` waiting for a lock of
    `holder_pid`; fail if the waiter finished without waiting."""
    deadline = asyncio.get_running_loop().time() + LOCK_WAIT_DEADLINE_SECONDS
    async with sessionmaker() as observer:
        while True:
            blockers = await observer.scalar(
                text("SELECT pg_blocking_pids(:pid)"), {"pid": waiter_pid}
            )
            await observer.rollback()
            if holder_pid in (blockers or []):
                return
            assert not waiter.done(), "the revocation did not wait for the rotation's locks"
            assert asyncio.get_running_loop().time() < deadline, "the revocation never blocked"
            # Polls the lock table; the order of events is the database's, not this interval's.
            await asyncio.sleep(0.01)
