"""Several server processes on one PostgreSQL and one Redis: nothing lives in process memory.

Run with DATABASE_URL=postgresql+psycopg://... and RATE_LIMIT_STORAGE_URL=redis://...;
without both these tests are deselected (and say so in pytest's summary).
"""

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import httpx2
import pytest
from sqlalchemy.orm import Session

from app.stores.revocations import RedisRevokedSessions
from tests.conftest import SERVE, LiveServer
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user

pytestmark = pytest.mark.multi_instance

MAX_FAILURES = 5
WRONG = {"email": "ada@example.com", "password": "not the password at all"}
RIGHT = {"email": "ada@example.com", "password": DEFAULT_PASSWORD}


@pytest.fixture
def two_instances(
    live_server: Callable[..., LiveServer], db: Session
) -> Iterator[tuple[httpx2.Client, httpx2.Client]]:
    make_user(db)
    a = live_server(LOGIN_MAX_FAILURES=MAX_FAILURES)
    b = live_server(LOGIN_MAX_FAILURES=MAX_FAILURES)
    with (
        httpx2.Client(base_url=a.url, timeout=30) as to_a,
        httpx2.Client(base_url=b.url, timeout=30) as to_b,
    ):
        yield to_a, to_b


@pytest.fixture
def two_workers(live_server: Callable[..., LiveServer], db: Session) -> Iterator[httpx2.Client]:
    make_user(db)
    # `jwt-auth-api serve` refuses several workers with memory://; with Redis it runs them.
    server = live_server("--workers", "2", command=SERVE, LOGIN_MAX_FAILURES=MAX_FAILURES)
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_tokens_minted_by_one_instance_validate_on_the_other(
    two_instances: tuple[httpx2.Client, httpx2.Client],
) -> None:
    a, b = two_instances
    pair = login(a)

    assert b.get("/test", headers=bearer(pair["access_token"])).status_code == 200
    assert b.get("/account/me", headers=bearer(pair["access_token"])).status_code == 200


def test_a_token_rotated_on_one_instance_and_replayed_on_the_other_is_reuse(
    two_instances: tuple[httpx2.Client, httpx2.Client],
) -> None:
    a, b = two_instances
    pair = login(a)
    rotated = a.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200

    replay = b.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})

    assert replay.status_code == 401
    assert "reuse" in replay.headers["WWW-Authenticate"]
    child = rotated.json()
    assert (
        a.post("/account/refresh", json={"refresh_token": child["refresh_token"]}).status_code
        == 401
    )
    for instance in (a, b):
        assert instance.get("/test", headers=bearer(child["access_token"])).status_code == 401


def test_failed_logins_spread_over_two_instances_add_up_to_one_lockout(
    two_instances: tuple[httpx2.Client, httpx2.Client],
) -> None:
    a, b = two_instances
    statuses = [a.post("/account/login", json=WRONG).status_code for _ in range(3)]
    statuses += [b.post("/account/login", json=WRONG).status_code for _ in range(2)]

    assert statuses == [400] * MAX_FAILURES
    assert a.post("/account/login", json=RIGHT).status_code == 429
    assert b.post("/account/login", json=RIGHT).status_code == 429


def test_logout_all_on_one_instance_cuts_access_tokens_on_the_other(
    two_instances: tuple[httpx2.Client, httpx2.Client],
) -> None:
    a, b = two_instances
    first, second = login(a), login(b)
    assert b.get("/test", headers=bearer(first["access_token"])).status_code == 200

    assert a.post("/account/logout-all", headers=bearer(first["access_token"])).status_code == 204

    for instance in (a, b):
        for pair in (first, second):
            response = instance.get("/test", headers=bearer(pair["access_token"]))
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_with_two_workers_revocation_throttling_and_reuse_hold_in_every_worker(
    two_workers: httpx2.Client,
) -> None:
    client = two_workers
    pair = login(client)
    # Many requests, so both workers answer some of them.
    assert {
        client.get("/test", headers=bearer(pair["access_token"])).status_code for _ in range(20)
    } == {200}

    assert (
        client.post("/account/logout-all", headers=bearer(pair["access_token"])).status_code == 204
    )
    assert {
        client.get("/test", headers=bearer(pair["access_token"])).status_code for _ in range(20)
    } == {401}

    again = login(client)
    rotated = client.post("/account/refresh", json={"refresh_token": again["refresh_token"]})
    assert rotated.status_code == 200
    assert (
        client.post("/account/refresh", json={"refresh_token": again["refresh_token"]}).status_code
        == 401
    )
    child = rotated.json()
    assert {
        client.get("/test", headers=bearer(child["access_token"])).status_code for _ in range(20)
    } == {401}

    statuses = [
        client.post("/account/login", json=WRONG).status_code for _ in range(MAX_FAILURES + 3)
    ]
    assert statuses == [400] * MAX_FAILURES + [429] * 3


def test_concurrent_revocation_checks_sharing_one_redis_round_trip_get_their_own_answers(
    storage_url: str,
) -> None:
    async def scenario() -> tuple[list[bool], list[bool]]:
        async def no_records(since: datetime) -> list[tuple[uuid.UUID, datetime]]:
            return []

        revoked = RedisRevokedSessions(storage_url, ttl_seconds=60, fetch=no_records)
        try:
            await revoked.start()
            ended = [uuid.uuid4() for _ in range(20)]
            live = [uuid.uuid4() for _ in range(20)]
            await revoked.add(ended)
            answers = await asyncio.gather(*(revoked.contains(sid) for sid in ended + live))
            return list(answers[:20]), list(answers[20:])
        finally:
            await revoked.close()

    ended_answers, live_answers = asyncio.run(scenario())

    assert ended_answers == [True] * 20
    assert live_answers == [False] * 20
