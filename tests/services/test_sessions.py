"""Session use cases on the real database: start, rotate, reuse, retry, end, list, prune."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.errors import AccountDisabled, InvalidToken, NotFound, RefreshTokenReused
from app.models import EndedSession, RefreshToken, User
from app.runtime import Runtime
from app.security.access_tokens import AccessClaims
from app.security.refresh_tokens import MAX_REFRESH_TOKEN_LENGTH, digest
from app.services import sessions
from app.stores.revocations import RedisRevokedSessions
from tests.factories import make_user
from tests.faults.redis_server import RedisServer
from tests.services.conftest import AUDIT, Services, transaction

CLIENT = sessions.Client.of("192.0.2.1", "unit test")


def _with_grace(services: Services) -> Services:
    return Services(services.settings.model_copy(update={"REFRESH_REUSE_GRACE_SECONDS": 30}))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _start(runtime: Runtime, user_id: int, now: datetime | None = None) -> sessions.Grant:
    async with transaction(runtime) as db:
        user = await db.get_one(User, user_id)
        return await sessions.start(
            db, issuer=runtime.issuer, user=user, client=CLIENT, now=now or _now(), audit=AUDIT
        )


async def _rotate(
    runtime: Runtime, refresh_token: str, now: datetime | None = None
) -> sessions.Grant:
    async with transaction(runtime) as db:
        return await sessions.rotate(
            db,
            issuer=runtime.issuer,
            refresh_token=refresh_token,
            client=CLIENT,
            revoked=runtime.revoked,
            now=now or _now(),
            audit=AUDIT,
        )


def test_a_client_longer_than_its_columns_is_cut_to_fit() -> None:
    client = sessions.Client.of("1" * 100, "agent " * 200)
    assert client.ip is not None
    assert client.user_agent is not None
    assert len(client.ip) < 100
    assert len(client.user_agent) < 1200
    assert sessions.Client.of("", None) == sessions.Client(ip=None, user_agent=None)


def test_starting_a_session_issues_tokens_and_stores_only_the_refresh_digest(
    services: Services, db: Session
) -> None:
    user = make_user(db, roles=["auditor"])

    async def work(runtime: Runtime) -> tuple[sessions.Grant, AccessClaims]:
        grant = await _start(runtime, user.id)
        return grant, runtime.issuer.codec.decode(grant.access_token)

    grant, claims = services.run(work)
    assert claims.user_id == user.id
    assert claims.session_id == grant.session_id
    assert claims.email == user.email
    assert grant.expires_in == services.settings.TOKEN_ACCESS_TTL_SECONDS
    [row] = db.scalars(select(RefreshToken)).all()
    assert row.token_digest == digest(grant.refresh_token)
    assert grant.refresh_token.encode() not in row.token_digest
    assert (row.ip, row.user_agent) == ("192.0.2.1", "unit test")


def test_a_disabled_user_cannot_start_a_session(services: Services, db: Session) -> None:
    user = make_user(db, is_active=False)
    with pytest.raises(AccountDisabled):
        services.run(lambda runtime: _start(runtime, user.id))


def test_rotating_spends_the_token_and_issues_its_child_in_the_same_session(
    services: Services, db: Session
) -> None:
    user = make_user(db)

    async def work(runtime: Runtime) -> tuple[sessions.Grant, sessions.Grant]:
        first = await _start(runtime, user.id)
        return first, await _rotate(runtime, first.refresh_token)

    first, second = services.run(work)
    assert second.session_id == first.session_id
    assert second.refresh_token != first.refresh_token
    parent, child = db.scalars(select(RefreshToken).order_by(RefreshToken.id)).all()
    assert parent.spent_at is not None
    assert parent.replaced_by_id == child.id
    assert child.spent_at is None


def test_reusing_a_spent_refresh_token_revokes_the_family(services: Services, db: Session) -> None:
    user = make_user(db)

    async def work(runtime: Runtime) -> tuple[uuid.UUID, bool]:
        first = await _start(runtime, user.id)
        await _rotate(runtime, first.refresh_token)
        with pytest.raises(RefreshTokenReused):
            await _rotate(runtime, first.refresh_token)
        return first.session_id, await runtime.revoked.contains(first.session_id)

    # The error rolls the reuse's transaction back here: the set is told before the commit.
    _, revoked = services.run(work)
    assert revoked


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param("not-a-token-of-ours", "unknown refresh token", id="unknown"),
        pytest.param("x" * (MAX_REFRESH_TOKEN_LENGTH + 1), "unknown refresh token", id="too-long"),
    ],
)
def test_a_token_that_is_not_ours_is_refused(services: Services, token: str, reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        services.run(lambda runtime: _rotate(runtime, token))


def test_an_expired_or_revoked_refresh_token_is_refused_with_its_reason(
    services: Services, db: Session
) -> None:
    user = make_user(db)

    async def work(runtime: Runtime) -> None:
        expired = await _start(runtime, user.id)
        later = _now() + timedelta(seconds=runtime.settings.TOKEN_REFRESH_TTL_SECONDS + 1)
        with pytest.raises(InvalidToken, match="expired"):
            await _rotate(runtime, expired.refresh_token, now=later)
        ended = await _start(runtime, user.id)
        async with transaction(runtime) as session:
            await sessions.end_all(session, user_id=user.id, revoked=runtime.revoked, now=_now())
        with pytest.raises(InvalidToken, match="revoked"):
            await _rotate(runtime, ended.refresh_token)

    services.run(work)


def test_a_retry_within_the_grace_gets_a_new_child_and_revokes_the_unused_one(
    services: Services, db: Session
) -> None:
    services = _with_grace(services)
    user = make_user(db)

    async def work(runtime: Runtime) -> tuple[sessions.Grant, sessions.Grant, sessions.Grant]:
        first = await _start(runtime, user.id)
        lost = await _rotate(runtime, first.refresh_token)
        retried = await _rotate(runtime, first.refresh_token)
        return first, lost, retried

    first, lost, retried = services.run(work)
    assert retried.session_id == first.session_id
    assert retried.refresh_token != lost.refresh_token
    rows = {row.token_digest: row for row in db.scalars(select(RefreshToken))}
    assert rows[digest(lost.refresh_token)].revoked_at is not None
    assert rows[digest(retried.refresh_token)].revoked_at is None
    assert rows[digest(first.refresh_token)].replaced_by_id == (
        rows[digest(retried.refresh_token)].id
    )


def test_a_retry_after_the_child_was_used_is_reuse(services: Services, db: Session) -> None:
    services = _with_grace(services)
    user = make_user(db)

    async def work(runtime: Runtime) -> None:
        first = await _start(runtime, user.id)
        child = await _rotate(runtime, first.refresh_token)
        await _rotate(runtime, child.refresh_token)
        with pytest.raises(RefreshTokenReused):
            await _rotate(runtime, first.refresh_token)

    services.run(work)


def test_logout_ends_the_family_and_an_unknown_token_is_no_error(
    services: Services, db: Session
) -> None:
    user = make_user(db)

    async def work(runtime: Runtime) -> tuple[uuid.UUID, bool]:
        grant = await _start(runtime, user.id)
        async with transaction(runtime) as session:
            for token in ("unknown", "x" * 500, grant.refresh_token):
                await sessions.end(
                    session, refresh_token=token, revoked=runtime.revoked, now=_now(), audit=AUDIT
                )
        return grant.session_id, await runtime.revoked.contains(grant.session_id)

    session_id, revoked = services.run(work)
    assert revoked
    assert db.scalars(select(EndedSession.session_id)).all() == [session_id]
    assert all(row.revoked_at is not None for row in db.scalars(select(RefreshToken)))


def test_a_user_can_end_only_its_own_live_sessions(services: Services, db: Session) -> None:
    ada = make_user(db)
    eve = make_user(db, email="eve@example.com")

    async def end_one(runtime: Runtime, user_id: int, session_id: uuid.UUID) -> None:
        async with transaction(runtime) as session:
            await sessions.end_one(
                session,
                user_id=user_id,
                session_id=session_id,
                revoked=runtime.revoked,
                now=_now(),
                audit=AUDIT,
            )

    async def work(runtime: Runtime) -> list[uuid.UUID]:
        mine = await _start(runtime, ada.id)
        kept = await _start(runtime, ada.id)
        with pytest.raises(NotFound):
            await end_one(runtime, eve.id, mine.session_id)
        await end_one(runtime, ada.id, mine.session_id)
        with pytest.raises(NotFound):
            await end_one(runtime, ada.id, mine.session_id)
        async with transaction(runtime) as session:
            active = await sessions.list_active(session, user_id=ada.id, now=_now())
        assert [found.id for found in active] == [kept.session_id]
        return [found.id for found in active]

    services.run(work)


def test_live_sessions_are_listed_newest_first_with_their_last_use(
    services: Services, db: Session
) -> None:
    user = make_user(db)
    start = _now() - timedelta(minutes=10)

    async def work(runtime: Runtime) -> list[sessions.ActiveSession]:
        older = await _start(runtime, user.id, now=start)
        await _start(runtime, user.id, now=start + timedelta(minutes=1))
        await _rotate(runtime, older.refresh_token, now=start + timedelta(minutes=2))
        async with transaction(runtime) as session:
            return await sessions.list_active(session, user_id=user.id, now=_now())

    newer, older = services.run(work)
    assert newer.created_at == start + timedelta(minutes=1)
    assert newer.last_used_at is None
    assert older.created_at == start
    assert older.last_used_at == start + timedelta(minutes=2)
    assert older.expires_at > _now()


def test_ended_session_records_are_read_since_a_time_and_pruned_before_one(
    services: Services, db: Session
) -> None:
    old, recent = uuid.uuid4(), uuid.uuid4()
    now = _now()
    db.add_all(
        [
            EndedSession(session_id=old, ended_at=now - timedelta(hours=2)),
            EndedSession(session_id=recent, ended_at=now),
        ]
    )
    db.commit()

    async def work(runtime: Runtime) -> tuple[list[uuid.UUID], int]:
        async with transaction(runtime) as session:
            since = await sessions.recently_revoked(session, since=now - timedelta(hours=1))
            pruned = await sessions.prune_ended_records(
                session, ended_before=now - timedelta(hours=1)
            )
        return [session_id for session_id, _ in since], pruned

    assert services.run(work) == ([recent], 1)
    assert db.scalars(select(EndedSession.session_id)).all() == [recent]


def test_pruning_deletes_ended_families_and_keeps_live_ones_with_their_spent_rows(
    services: Services, db: Session
) -> None:
    user = make_user(db)
    long_ago = _now() - timedelta(days=400)

    async def work(runtime: Runtime) -> tuple[int, int]:
        await _start(runtime, user.id, now=long_ago)
        live = await _start(runtime, user.id)
        await _rotate(runtime, live.refresh_token)
        async with transaction(runtime) as session:
            first = await sessions.prune(
                session, ended_before=_now() - timedelta(days=1), batch_size=10
            )
            again = await sessions.prune(
                session, ended_before=_now() - timedelta(days=1), batch_size=10
            )
        return first, again

    assert services.run(work) == (1, 0)
    assert db.scalar(select(func.count()).select_from(RefreshToken)) == 2


def test_a_session_ended_while_the_shared_set_is_lost_stays_ended(
    services: Services, db: Session, sync_engine: Engine, redis_server: RedisServer
) -> None:
    """Redis flushed between the add before the commit and the commit, and the set rebuilt
    in between from records not committed yet: the add after the commit keeps the session
    ended (as the request's get_db and the CLI make it)."""
    user = make_user(db)

    async def committed_records(since: datetime) -> list[tuple[uuid.UUID, datetime]]:
        # Another process's read: only what is committed.
        with sync_engine.connect() as connection:
            found = connection.execute(
                select(EndedSession.session_id, EndedSession.ended_at).where(
                    EndedSession.ended_at >= since
                )
            )
            return [(row.session_id, row.ended_at) for row in found]

    async def work(runtime: Runtime) -> bool:
        grant = await _start(runtime, user.id)
        store = RedisRevokedSessions(redis_server.url, 60, committed_records)
        await store.start()
        try:
            async with runtime.sessionmaker() as session:
                await sessions.end(
                    session,
                    refresh_token=grant.refresh_token,
                    revoked=store,
                    now=_now(),
                    audit=AUDIT,
                )
                redis_server.flushall()
                # Any check now rebuilds the set, from records without this session's.
                assert not await store.contains(uuid.uuid4())
                assert store.reloads == 2
                await session.commit()
                await sessions.confirm_ended(session)
            return await store.contains(grant.session_id)
        finally:
            await store.close()

    assert services.run(work)
