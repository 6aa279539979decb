"""Administration use cases on the real database: paging, changing and deleting users."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, ValidationFailed
from app.models import User, UserRole
from app.runtime import Runtime
from app.services import admin
from tests.factories import make_user
from tests.services.conftest import AUDIT, Services, transaction
from tests.services.test_sessions import _start


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.mark.parametrize("user_id", [0, 1, 42, admin.MAX_USER_ID], ids=["zero", "one", "42", "max"])
def test_a_cursor_names_the_position_it_was_made_for(user_id: int) -> None:
    assert admin.decode_cursor(admin.encode_cursor(user_id)) == user_id


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("!!!", id="not-base64"),
        pytest.param(admin.encode_cursor(1) + "=", id="padded"),
        pytest.param("YWJj", id="not-digits"),
        pytest.param("é", id="not-ascii"),
        pytest.param("A" * (admin.MAX_CURSOR_LENGTH + 1), id="too-long"),
        pytest.param("MjE0NzQ4MzY0OA", id="past-the-column-range"),
    ],
)
def test_a_cursor_that_we_did_not_make_is_a_validation_error(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        admin.decode_cursor(cursor)


def test_users_are_paged_by_id_and_filtered_by_a_literal_email_prefix(
    services: Services, db: Session
) -> None:
    ids = [make_user(db, email=f"a{n}@example.com").id for n in range(3)]
    make_user(db, email="a_x@example.com", roles=["admin"])

    async def work(runtime: Runtime) -> tuple[list[int], list[int], list[str]]:
        async with transaction(runtime) as session:
            first = await admin.list_users(session, email_prefix="a", limit=2, cursor=None)
            assert first.next_cursor is not None
            rest = await admin.list_users(
                session, email_prefix="a", limit=2, cursor=first.next_cursor
            )
            literal = await admin.list_users(session, email_prefix="a_", limit=10, cursor=None)
        assert rest.next_cursor is None
        return (
            [item.user.id for item in first.items],
            [item.user.id for item in rest.items],
            [f"{item.user.email}:{','.join(item.roles)}" for item in literal.items],
        )

    first, rest, literal = services.run(work)
    assert first == ids[:2]
    assert rest == [ids[2], ids[2] + 1]
    assert literal == ["a_x@example.com:admin"]


def test_an_admin_cannot_disable_or_demote_or_delete_itself(
    services: Services, db: Session
) -> None:
    actor = make_user(db, roles=["admin"])

    async def work(runtime: Runtime) -> None:
        async with transaction(runtime) as session:
            me = await session.get_one(User, actor.id)
            now = _now()
            with pytest.raises(Conflict, match="disable"):
                await admin.update_user(
                    session,
                    actor=me,
                    user_id=me.id,
                    is_active=False,
                    roles=None,
                    revoked=runtime.revoked,
                    now=now,
                    audit=AUDIT,
                )
            with pytest.raises(Conflict, match="admin role"):
                await admin.update_user(
                    session,
                    actor=me,
                    user_id=me.id,
                    is_active=None,
                    roles=[],
                    revoked=runtime.revoked,
                    now=now,
                    audit=AUDIT,
                )
            with pytest.raises(Conflict, match="delete"):
                await admin.delete_user(
                    session, actor=me, user_id=me.id, revoked=runtime.revoked, now=now, audit=AUDIT
                )

    services.run(work)


def test_disabling_a_user_ends_its_sessions_and_enabling_it_again_is_allowed(
    services: Services, db: Session
) -> None:
    actor = make_user(db, email="root@example.com", roles=["admin"])
    target = make_user(db)

    async def update(runtime: Runtime, **change: object) -> admin.ManagedUser:
        async with transaction(runtime) as session:
            return await admin.update_user(
                session,
                actor=await session.get_one(User, actor.id),
                user_id=target.id,
                revoked=runtime.revoked,
                now=_now(),
                audit=AUDIT,
                **change,  # type: ignore[arg-type]
            )

    async def work(runtime: Runtime) -> tuple[bool, bool, list[str]]:
        grant = await _start(runtime, target.id)
        disabled = await update(runtime, is_active=False, roles=["auditor"])
        ended = await runtime.revoked.contains(grant.session_id)
        enabled = await update(runtime, is_active=True, roles=None)
        return disabled.user.is_active, ended, enabled.roles

    assert services.run(work) == (False, True, ["auditor"])
    db.expire_all()
    assert db.get_one(User, target.id).is_active
    assert db.scalars(select(UserRole.role)).all() == ["admin", "auditor"]


def test_an_unknown_user_is_not_found(services: Services, db: Session) -> None:
    actor = make_user(db, roles=["admin"])

    async def work(runtime: Runtime) -> None:
        async with transaction(runtime) as session:
            with pytest.raises(NotFound):
                await admin.get_user(session, user_id=actor.id + 1)
            with pytest.raises(NotFound):
                await admin.delete_user(
                    session,
                    actor=await session.get_one(User, actor.id),
                    user_id=actor.id + 1,
                    revoked=runtime.revoked,
                    now=_now(),
                    audit=AUDIT,
                )
            found = await admin.get_user(session, user_id=actor.id)
            assert found.roles == ["admin"]

    services.run(work)
