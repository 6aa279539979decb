"""The revoked-session set in Redis under faults: restarted empty, flushed, cut, down at
start-up, and the leeway window. Real uvicorn processes on PostgreSQL against a private
redis-server; bounds on recovery are liveness bounds with generous slack."""

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from sqlalchemy.orm import Session

from tests.conftest import LiveServer
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user
from tests.faults.redis_server import RedisServer

pytestmark = pytest.mark.faults

# Generous: the machine running the tests may be loaded.
RECOVERY_SECONDS = 15.0
REBUILT = "revoked-session set rebuilt"
LOSS = "after the revocation store lost its data"


def until(condition: Callable[[], bool], seconds: float = RECOVERY_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def status_of(client: httpx2.Client, access_token: str) -> int:
    return client.get("/test", headers=bearer(access_token)).status_code


def ended_sessions(client: httpx2.Client) -> list[dict[str, Any]]:
    """Sessions ended three ways (logout, reuse, logout-all, which ends every session of
    the user): their pairs."""
    logged_out, reused, everywhere = login(client), login(client), login(client)
    assert (
        client.post(
            "/account/logout", json={"refresh_token": logged_out["refresh_token"]}
        ).status_code
        == 204
    )
    rotated = client.post("/account/refresh", json={"refresh_token": reused["refresh_token"]})
    assert rotated.status_code == 200
    replay = client.post("/account/refresh", json={"refresh_token": reused["refresh_token"]})
    assert replay.status_code == 401
    assert (
        client.post("/account/logout-all", headers=bearer(everywhere["access_token"])).status_code
        == 204
    )
    return [logged_out, reused, rotated.json(), everywhere]


@pytest.fixture
def store_env(redis_server: RedisServer) -> dict[str, str]:
    # The IP limit makes refresh touch Redis too, as it does in production.
    return {"RATE_LIMIT_STORAGE_URL": redis_server.url, "IP_RATE_LIMIT": "100000/minute"}


@pytest.fixture
def two_instances(
    live_server: Callable[..., LiveServer], db: Session, store_env: dict[str, str]
) -> Iterator[tuple[tuple[LiveServer, httpx2.Client], tuple[LiveServer, httpx2.Client]]]:
    make_user(db)
    a = live_server(**store_env)
    b = live_server(**store_env)
    with (
        httpx2.Client(base_url=a.url, timeout=30) as to_a,
        httpx2.Client(base_url=b.url, timeout=30) as to_b,
    ):
        yield (a, to_a), (b, to_b)


@pytest.mark.parametrize("loss", ["restart_empty", "flushall"])
def test_a_lost_store_never_lets_an_ended_session_back_in_on_any_instance(
    two_instances: tuple[tuple[LiveServer, httpx2.Client], tuple[LiveServer, httpx2.Client]],
    redis_server: RedisServer,
    loss: str,
) -> None:
    (server_a, a), (server_b, b) = two_instances
    ended = ended_sessions(a)
    live = login(b)
    for client in (a, b):
        assert {status_of(client, pair["access_token"]) for pair in ended} == {401}

    getattr(redis_server, loss)()

    # Every answer from the loss on: 401 or 503, never 200, on each instance.
    seen: set[int] = set()
    for _ in range(5):
        for client in (a, b):
            seen |= {status_of(client, pair["access_token"]) for pair in ended}
    assert seen <= {401, 503}
    # Recovered without restarting anything: ended sessions 401, the live one 200.
    for client in (a, b):

        def recovered(client: httpx2.Client = client) -> bool:
            return {status_of(client, pair["access_token"]) for pair in ended} == {401}

        assert until(recovered)
        assert status_of(client, live["access_token"]) == 200
    # At most one rebuild per process, each announced on one log line; the first instance
    # to notice may rebuild the shared set before the other looks.
    rebuilds = [server.read_log().count(LOSS) for server in (server_a, server_b)]
    assert sum(rebuilds) >= 1, rebuilds
    assert max(rebuilds) == 1, rebuilds


def test_a_cut_store_answers_503_never_500_and_recovers_when_it_returns(
    live_server: Callable[..., LiveServer],
    db: Session,
    redis_server: RedisServer,
    store_env: dict[str, str],
) -> None:
    make_user(db)
    server = live_server(**store_env)
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        ended = ended_sessions(client)
        # After the logout-all of ended_sessions.
        pair = login(client)

        redis_server.stop()
        during = {
            "bearer": status_of(client, pair["access_token"]),
            "ended bearer": status_of(client, ended[0]["access_token"]),
            "refresh": client.post(
                "/account/refresh", json={"refresh_token": pair["refresh_token"]}
            ).status_code,
            "login": client.post(
                "/account/login", json={"email": "ada@example.com", "password": "x" * 20}
            ).status_code,
        }
        ready = client.get("/health/ready")
        time.sleep(2)
        redis_server.start()

        assert during == dict.fromkeys(during, 503)
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "ok", "revocation_store": "unavailable"}
        assert until(lambda: status_of(client, pair["access_token"]) == 200)
        assert status_of(client, ended[0]["access_token"]) == 401
        assert client.get("/health/ready").status_code == 200
        assert (
            client.post(
                "/account/refresh", json={"refresh_token": pair["refresh_token"]}
            ).status_code
            == 200
        )
        right = {"email": "ada@example.com", "password": DEFAULT_PASSWORD}
        assert until(lambda: client.post("/account/login", json=right).status_code == 200)
    assert "Traceback" not in server.read_log()


def test_an_instance_started_while_the_store_is_down_says_so_and_recovers_without_a_storm(
    live_server: Callable[..., LiveServer],
    db: Session,
    redis_server: RedisServer,
    store_env: dict[str, str],
) -> None:
    make_user(db)
    first = live_server(**store_env)
    with httpx2.Client(base_url=first.url, timeout=30) as client:
        ended = ended_sessions(client)
        # After the logout-all of ended_sessions.
        pair = login(client)
    redis_server.stop()

    server = live_server(**store_env)
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        ready = client.get("/health/ready")
        during = {status_of(client, pair["access_token"]) for _ in range(50)}
        time.sleep(1)
        redis_server.start()

        assert ready.status_code == 503
        assert ready.headers["Content-Type"] == "application/problem+json"
        assert ready.json()["checks"] == {"database": "ok", "revocation_store": "unavailable"}
        assert during == {503}
        assert until(lambda: client.get("/health/ready").status_code == 200)
        assert until(lambda: status_of(client, pair["access_token"]) == 200)
        assert {status_of(client, p["access_token"]) for p in ended} == {401}
    log = server.read_log()
    assert "revocation store unreachable at start-up" in log
    # Down: no rebuild at all (each check failed at Redis, before any database work);
    # back: one.
    assert log.count(REBUILT) == 1, log


def test_a_logged_out_token_stays_refused_through_the_leeway_window(
    live_server: Callable[..., LiveServer],
    db: Session,
    redis_server: RedisServer,
    store_env: dict[str, str],
) -> None:
    make_user(db)
    server = live_server(**store_env, TOKEN_ACCESS_TTL_SECONDS=2, TOKEN_LEEWAY_SECONDS=6)
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        ended, live = login(client), login(client)
        assert (
            client.post(
                "/account/logout", json={"refresh_token": ended["refresh_token"]}
            ).status_code
            == 204
        )
        started = time.monotonic()
        seen: set[int] = set()
        live_status = None
        while time.monotonic() - started < 7:
            seen.add(status_of(client, ended["access_token"]))
            if live_status is None and time.monotonic() - started > 3:
                # Past exp but within the leeway, the live session's token is accepted: the
                # 401s are the revocation's, not the expiry's.
                live_status = status_of(client, live["access_token"])
                # And a set rebuilt now still holds the ended session.
                redis_server.flushall()
            time.sleep(0.2)

    assert seen <= {401, 503}
    assert 401 in seen
    assert live_status == 200
