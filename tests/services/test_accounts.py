"""Account use cases on the real database: register, authenticate, change password, set and
delete users."""

import uuid
from datetime import UTC, datetime

import pytest
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import (
    AccountDisabled,
    EmailTaken,
    InvalidCredentials,
    Throttled,
    WeakPassword,
    WrongPassword,
)
from app.models import EndedSession, RefreshToken, User, UserRole
from app.runtime import Runtime
from app.services import accounts, sessions
from tests.factories import DEFAULT_PASSWORD, hash_password, make_user
from tests.services.conftest import AUDIT, Services, transaction

NEW_PASSWORD = "an entirely different passphrase"
CLIENT = sessions.Client.of("192.0.2.1", "unit test")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _authenticate(runtime: Runtime, email: str, password: str) -> User:
    async with transaction(runtime) as db:
        return await accounts.authenticate(
            db,
            hasher=runtime.hasher,
            throttle=runtime.throttle,
            email=email,
            password=password,
            audit=AUDIT,
        )


async def _login(runtime: Runtime, email: str = "ada@example.com") -> sessions.Grant:
    async with transaction(runtime) as db:
        user = await accounts.authenticate(
            db,
            hasher=runtime.hasher,
            throttle=runtime.throttle,
            email=email,
            password=DEFAULT_PASSWORD,
            audit=AUDIT,
        )
        return await sessions.start(
            db, issuer=runtime.issuer, user=user, client=CLIENT, now=_now(), audit=AUDIT
        )


def test_registering_stores_an_argon2_hash_and_never_the_password(
    services: Services, db: Session
) -> None:
    async def work(runtime: Runtime) -> int:
        async with transaction(runtime) as session:
            user = await accounts.register(
                session,
                hasher=runtime.hasher,
                email="grace@example.com",
                password=DEFAULT_PASSWORD,
                min_length=15,
                now=_now(),
                first_name="Grace",
            )
            return user.id

    user_id = services.run(work)
    stored = db.get_one(User, user_id)
    assert stored.email == "grace@example.com"
    assert stored.first_name == "Grace"
    assert stored.password_hash.startswith("$argon2id$")
    assert DEFAULT_PASSWORD not in stored.password_hash


def test_registering_a_taken_email_is_refused_and_keeps_the_first_account(
    services: Services, db: Session
) -> None:
    first = make_user(db, email="ada@example.com")

    async def work(runtime: Runtime) -> None:
        async with transaction(runtime) as session:
            await accounts.register(
                session,
                hasher=runtime.hasher,
                email="ada@example.com",
                password="another long passphrase here",
                min_length=15,
                now=_now(),
            )

    with pytest.raises(EmailTaken):
        services.run(work)
    assert db.scalars(select(User.id)).all() == [first.id]


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        pytest.param("too short", "must be at least 15 characters", id="short"),
        pytest.param("1q2w3e4r5t6y7u8i9o0p", "is too common", id="common"),
        pytest.param(
            "grace.hopper.grace.hopper", "must not contain a part of the email", id="email-piece"
        ),
    ],
)
def test_a_weak_password_is_refused_before_anything_is_stored(
    services: Services, db: Session, password: str, problem: str
) -> None:
    async def work(runtime: Runtime) -> None:
        async with transaction(runtime) as session:
            await accounts.register(
                session,
                hasher=runtime.hasher,
                email="grace.hopper@example.com",
                password=password,
                min_length=15,
                now=_now(),
            )

    with pytest.raises(WeakPassword) as refused:
        services.run(work)
    assert problem in str(refused.value.errors), refused.value.errors
    assert db.scalar(select(func.count()).select_from(User)) == 0


def test_the_right_password_authenticates_its_user(services: Services, db: Session) -> None:
    user = make_user(db)
    found = services.run(lambda runtime: _authenticate(runtime, user.email, DEFAULT_PASSWORD))
    assert found.id == user.id


@pytest.mark.parametrize(
    ("email", "password"),
    [
        pytest.param("ada@example.com", "a wrong but long passphrase", id="wrong-password"),
        pytest.param("nobody@example.com", DEFAULT_PASSWORD, id="unknown-email"),
    ],
)
def test_wrong_credentials_get_one_answer_whether_or_not_the_account_exists(
    services: Services, db: Session, email: str, password: str
) -> None:
    make_user(db)
    with pytest.raises(InvalidCredentials):
        services.run(lambda runtime: _authenticate(runtime, email, password))


def test_a_known_and_an_unknown_email_each_cost_one_argon2_verification(
    services: Services, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user(db)
    computed: list[str] = []
    real_verify = Argon2Hasher.verify

    def counting_verify(self: Argon2Hasher, password: str | bytes, hash: str | bytes) -> bool:
        computed.append(str(hash))
        return real_verify(self, password, hash)

    monkeypatch.setattr(Argon2Hasher, "verify", counting_verify)

    async def work(runtime: Runtime) -> list[int]:
        costs = []
        for email in ("ada@example.com", "nobody@example.com"):
            before = len(computed)
            with pytest.raises(InvalidCredentials):
                await _authenticate(runtime, email, "a wrong but long passphrase")
            costs.append(len(computed) - before)
        return costs

    assert services.run(work) == [1, 1]


def test_failed_logins_past_the_limit_are_throttled_even_with_the_right_password(
    services: Services, db: Session
) -> None:
    user = make_user(db)

    async def work(runtime: Runtime) -> None:
        for _ in range(runtime.settings.LOGIN_MAX_FAILURES):
            with pytest.raises(InvalidCredentials):
                await _authenticate(runtime, user.email, "a wrong but long passphrase")
        await _authenticate(runtime, user.email, DEFAULT_PASSWORD)

    with pytest.raises(Throttled) as throttled:
        services.run(work)
    assert throttled.value.retry_after >= 1


def test_issuing_tokens_clears_the_failed_logins(services: Services, db: Session) -> None:
    user = make_user(db)

    async def work(runtime: Runtime) -> None:
        for _ in range(2):
            for _ in range(runtime.settings.LOGIN_MAX_FAILURES - 1):
                with pytest.raises(InvalidCredentials):
                    await _authenticate(runtime, user.email, "a wrong but long passphrase")
            await _authenticate(runtime, user.email, DEFAULT_PASSWORD)
            await accounts.login_succeeded(runtime.throttle, user.email)

    services.run(work)


def test_the_right_password_alone_does_not_clear_the_failed_logins(
    services: Services, db: Session
) -> None:
    # A second factor may still be guessed after it: only issued tokens clear the count.
    user = make_user(db)

    async def work(runtime: Runtime) -> None:
        for _ in range(runtime.settings.LOGIN_MAX_FAILURES - 1):
            with pytest.raises(InvalidCredentials):
                await _authenticate(runtime, user.email, "a wrong but long passphrase")
        await _authenticate(runtime, user.email, DEFAULT_PASSWORD)
        with pytest.raises(InvalidCredentials):
            await _authenticate(runtime, user.email, "a wrong but long passphrase")
        with pytest.raises(Throttled):
            await _authenticate(runtime, user.email, DEFAULT_PASSWORD)

    services.run(work)


def test_a_disabled_account_is_told_only_after_the_right_password(
    services: Services, db: Session
) -> None:
    user = make_user(db, is_active=False)
    with pytest.raises(InvalidCredentials):
        services.run(lambda runtime: _authenticate(runtime, user.email, "a wrong long passphrase"))
    with pytest.raises(AccountDisabled):
        services.run(lambda runtime: _authenticate(runtime, user.email, DEFAULT_PASSWORD))


def test_a_hash_with_old_parameters_is_upgraded_at_login(services: Services, db: Session) -> None:
    from pwdlib import PasswordHash

    old = PasswordHash((Argon2Hasher(memory_cost=2048, time_cost=1, parallelism=1),))
    user = make_user(db, password_hash=hash_password(DEFAULT_PASSWORD, old))
    services.run(lambda runtime: _authenticate(runtime, user.email, DEFAULT_PASSWORD))
    db.expire_all()
    assert db.get_one(User, user.id).password_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")


def test_changing_the_password_needs_the_current_one(services: Services, db: Session) -> None:
    user = make_user(db)

    async def change(runtime: Runtime, current: str) -> None:
        async with transaction(runtime) as session:
            await accounts.change_password(
                session,
                hasher=runtime.hasher,
                throttle=runtime.throttle,
                user=await session.get_one(User, user.id),
                current_password=current,
                new_password=NEW_PASSWORD,
                min_length=15,
                audit=AUDIT,
            )

    with pytest.raises(WrongPassword):
        services.run(lambda runtime: change(runtime, "a wrong but long passphrase"))
    services.run(lambda runtime: change(runtime, DEFAULT_PASSWORD))

    with pytest.raises(InvalidCredentials):
        services.run(lambda runtime: _authenticate(runtime, user.email, DEFAULT_PASSWORD))
    assert services.run(lambda runtime: _authenticate(runtime, user.email, NEW_PASSWORD)).id == (
        user.id
    )


def test_a_weak_new_password_is_refused_whatever_the_current_one(
    services: Services, db: Session
) -> None:
    user = make_user(db)

    async def work(runtime: Runtime) -> None:
        async with transaction(runtime) as session:
            await accounts.change_password(
                session,
                hasher=runtime.hasher,
                throttle=runtime.throttle,
                user=await session.get_one(User, user.id),
                current_password="not even the right one",
                new_password="short",
                min_length=15,
                audit=AUDIT,
            )

    with pytest.raises(WeakPassword) as refused:
        services.run(work)
    assert refused.value.errors[0]["loc"][-1] == "new_password"


def test_a_login_that_checked_the_password_before_a_change_starts_no_session(
    services: Services, db: Session
) -> None:
    make_user(db)

    async def work(runtime: Runtime) -> None:
        user = await _authenticate(runtime, "ada@example.com", DEFAULT_PASSWORD)
        async with transaction(runtime) as session:
            await accounts.invalidate_credentials(session, await session.get_one(User, user.id))
        async with transaction(runtime) as session:
            await sessions.start(
                session, issuer=runtime.issuer, user=user, client=CLIENT, now=_now(), audit=AUDIT
            )

    with pytest.raises(InvalidCredentials):
        services.run(work)
    assert db.scalar(select(func.count()).select_from(RefreshToken)) == 0


def test_set_user_creates_an_account_then_resets_its_password_and_replaces_its_roles(
    services: Services, db: Session
) -> None:
    async def set_user(runtime: Runtime, password: str, roles: tuple[str, ...]) -> int:
        async with transaction(runtime) as session:
            user = await accounts.set_user(
                session,
                hasher=runtime.hasher,
                email="ada@example.com",
                password=password,
                now=_now(),
                first_name="Ada",
                roles=roles,
            )
            return user.id

    first = services.run(lambda runtime: set_user(runtime, DEFAULT_PASSWORD, ("admin", "auditor")))
    second = services.run(lambda runtime: set_user(runtime, NEW_PASSWORD, ("auditor",)))

    assert first == second
    assert db.scalars(select(UserRole.role).where(UserRole.user_id == first)).all() == ["auditor"]
    assert db.get_one(User, first).first_name == "Ada"
    assert services.run(lambda runtime: _authenticate(runtime, "ada@example.com", NEW_PASSWORD))


def test_user_with_role_says_whether_the_user_has_it_now(services: Services, db: Session) -> None:
    admin = make_user(db, email="admin@example.com", roles=["admin"])
    plain = make_user(db, email="plain@example.com")

    async def work(runtime: Runtime) -> list[bool | None]:
        async with transaction(runtime) as session:
            answers: list[bool | None] = []
            for user_id in (admin.id, plain.id, plain.id + 1000):
                found = await accounts.user_with_role(session, user_id=user_id, role="admin")
                answers.append(None if found is None else found[1])
            return answers

    assert services.run(work) == [True, False, None]


def test_deleting_a_user_ends_its_sessions_and_keeps_their_records(
    services: Services, db: Session
) -> None:
    user = make_user(db, roles=["auditor"])

    async def work(runtime: Runtime) -> tuple[uuid.UUID, bool]:
        grant = await _login(runtime)
        async with transaction(runtime) as session:
            await accounts.delete_user(
                session,
                user=await session.get_one(User, user.id),
                revoked=runtime.revoked,
                now=_now(),
                audit=AUDIT,
            )
        return grant.session_id, await runtime.revoked.contains(grant.session_id)

    session_id, revoked = services.run(work)
    assert revoked
    assert db.scalar(select(func.count()).select_from(User)) == 0
    assert db.scalar(select(func.count()).select_from(RefreshToken)) == 0
    assert db.scalar(select(func.count()).select_from(UserRole)) == 0
    assert db.scalars(select(EndedSession.session_id)).all() == [session_id]
