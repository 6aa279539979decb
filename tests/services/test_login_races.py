"""A login racing a password change: whichever order the two reach the user row, no
session of the old password survives (API.md, "Hardening rules").

Deterministic: the login has checked the password (its transaction released, as before
argon2) when the change happens; the change either commits first, or holds its
uncommitted bump while the login starts its session, or waits for a login that started
first. On PostgreSQL (READ COMMITTED) the row lock is what orders them; on SQLite the
BEGIN IMMEDIATE of every writer.
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
from app.errors import InvalidCredentials
from app.models import RefreshToken, User
from app.observability.audit import Audit
from app.runtime import Runtime
from app.services import accounts, sessions
from tests.factories import DEFAULT_PASSWORD, make_user

HOLD_SECONDS = 0.3
AUDIT = Audit(request_id=None, ip=None, user_agent=None)
NEW_PASSWORD = "an entirely different passphrase"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


Scenario = Callable[[Runtime, Callable[[], AsyncSession]], Awaitable[None]]


async def _authenticate(runtime: Runtime, db: AsyncSession) -> User:
    return await accounts.authenticate(
        db,
        hasher=runtime.hasher,
        throttle=runtime.throttle,
        email="ada@example.com",
        password=DEFAULT_PASSWORD,
        audit=AUDIT,
    )


async def _start(runtime: Runtime, db: AsyncSession, user: User) -> None:
    await sessions.start(
        db,
        issuer=runtime.issuer,
        user=user,
        client=sessions.Client.of("127.0.0.1", "racer"),
        now=_now(),
        audit=AUDIT,
    )


async def _change(runtime: Runtime, db: AsyncSession, *, hold: bool = False) -> None:
    user = (await db.execute(select(User).where(User.email == "ada@example.com"))).scalar_one()
    await accounts.change_password(
        db,
        hasher=runtime.hasher,
        throttle=runtime.throttle,
        user=user,
        current_password=DEFAULT_PASSWORD,
        new_password=NEW_PASSWORD,
        min_length=15,
        audit=AUDIT,
    )
    await sessions.end_all(db, user_id=user.id, revoked=runtime.revoked, now=_now())
    if hold:
        await asyncio.sleep(HOLD_SECONDS)
    await db.commit()


async def change_commits_first(runtime: Runtime, new_db: Callable[[], AsyncSession]) -> None:
    async with new_db() as logging_in, new_db() as changing:
        user = await _authenticate(runtime, logging_in)
        await _change(runtime, changing)
        with pytest.raises(InvalidCredentials):
            await _start(runtime, logging_in, user)


async def change_holds_its_bump(runtime: Runtime, new_db: Callable[[], AsyncSession]) -> None:
    async with new_db() as logging_in, new_db() as changing:
        user = await _authenticate(runtime, logging_in)
        changing_task = asyncio.create_task(_change(runtime, changing, hold=True))
        # The change is past its hash and holds the row (or SQLite's write lock).
        await asyncio.sleep(HOLD_SECONDS / 2)
        with pytest.raises(InvalidCredentials):
            await _start(runtime, logging_in, user)
        await changing_task


async def login_starts_first(runtime: Runtime, new_db: Callable[[], AsyncSession]) -> None:
    async with new_db() as logging_in, new_db() as changing:
        user = await _authenticate(runtime, logging_in)
        await _start(runtime, logging_in, user)
        changing_task = asyncio.create_task(_change(runtime, changing))
        await asyncio.sleep(HOLD_SECONDS)
        await logging_in.commit()
        await changing_task


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(change_commits_first, id="change-commits-first"),
        pytest.param(change_holds_its_bump, id="change-uncommitted"),
        pytest.param(login_starts_first, id="login-starts-first"),
    ],
)
def test_a_login_racing_a_password_change_leaves_no_live_session(
    client: TestClient, db: Session, settings: Settings, scenario: Scenario
) -> None:
    user = make_user(db)
    runtime = Runtime.build(settings)

    async def race() -> None:
        engine = create_engine_for(settings)
        try:
            await scenario(runtime, create_sessionmaker(engine))
        finally:
            await engine.dispose()
            await runtime.close()

    asyncio.run(race())

    db.rollback()
    rows = db.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)).all()
    assert all(row.revoked_at is not None for row in rows)
    stored = db.get(User, user.id, populate_existing=True)
    assert stored is not None
    assert stored.credentials_version == 1
