"""Ending a session while a rotation of it is in flight: the child must end with its family.

Deterministic: the rotation holds its transaction open (its child inserted, not committed)
while the revocation starts, so the revocation has to wait for it. On PostgreSQL (READ
COMMITTED) the waiting UPDATE then sees the spent parent but not the child; on SQLite the
revocation's BEGIN IMMEDIATE waits for the whole rotation.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import create_engine_for, create_sessionmaker
from app.models import RefreshToken
from app.observability.audit import Audit
from app.runtime import Runtime
from app.services import sessions
from app.stores.revocations import MemoryRevokedSessions
from tests.factories import login, make_user

# Long enough for the revocation to reach its lock wait before the rotation commits.
HOLD_SECONDS = 0.3
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
        engine = create_engine_for(settings)
        sessionmaker = create_sessionmaker(engine)
        rotation_spent = asyncio.Event()
        try:
            async with sessionmaker() as rotating, sessionmaker() as revoking:

                async def rotate() -> None:
                    await sessions.rotate(
                        rotating,
                        issuer=runtime.issuer,
                        refresh_token=pair["refresh_token"],
                        client=sessions.Client.of("127.0.0.1", "racer"),
                        revoked=revoked,
                        now=_now(),
                        audit=AUDIT,
                    )
                    rotation_spent.set()
                    await asyncio.sleep(HOLD_SECONDS)
                    await rotating.commit()

                async def end() -> None:
                    await rotation_spent.wait()
                    await revoke(revoking, pair["refresh_token"], user.id, revoked)
                    await revoking.commit()

                await asyncio.gather(rotate(), end())
        finally:
            await engine.dispose()
            await runtime.close()

    asyncio.run(race())

    rows = db.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)).all()
    assert len(rows) == 2, "the rotation issued its child"
    assert all(row.revoked_at is not None for row in rows), [
        (row.id, row.spent_at, row.revoked_at) for row in rows
    ]
    assert len({row.session_id for row in rows}) == 1
