"""Concurrent refreshes of one token against a real server: exactly one wins, the rest is reuse."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
from sqlalchemy.orm import Session

from tests.conftest import LiveServer
from tests.factories import bearer, login, make_user

RACERS = 20
TIMEOUT_SECONDS = 30.0


def race_refresh(url: str, refresh_token: str, racers: int) -> list[httpx2.Response]:
    """`racers` clients, each with an open connection, send the same refresh at one instant."""
    barrier = threading.Barrier(racers, timeout=TIMEOUT_SECONDS)

    def one(_: int) -> httpx2.Response:
        with httpx2.Client(base_url=url, timeout=TIMEOUT_SECONDS) as client:
            # Open the connection first, so the barrier releases requests, not TCP handshakes.
            assert client.get("/health").status_code == 200
            barrier.wait()
            return client.post("/account/refresh", json={"refresh_token": refresh_token})

    with ThreadPoolExecutor(max_workers=racers) as pool:
        return list(pool.map(one, range(racers)))


def test_concurrent_refreshes_of_one_token_let_exactly_one_win_and_revoke_the_family(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    make_user(db)
    server = live_server()
    with httpx2.Client(base_url=server.url, timeout=TIMEOUT_SECONDS) as client:
        pair = login(client)

        responses = race_refresh(server.url, pair["refresh_token"], RACERS)

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] + [401] * (RACERS - 1), [r.text for r in responses]
        [winner] = [r.json() for r in responses if r.status_code == 200]
        for loser in (r for r in responses if r.status_code == 401):
            assert loser.headers["WWW-Authenticate"].startswith(
                'Bearer realm="http://testserver", error="invalid_token"'
            )
        # Every loser presented a spent token: reuse, so the winner's tokens die too.
        assert_family_ended(client, winner)


def assert_family_ended(client: httpx2.Client, pair: dict[str, Any]) -> None:
    again = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 401, again.text
    test = client.get("/test", headers=bearer(pair["access_token"]))
    assert test.status_code == 401, test.text


FLOOD = 64


def test_a_login_flood_neither_fails_nor_blocks_refreshes_and_protected_calls(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    """Argon2 at the production cost, far more logins than cores: every request is answered
    with its documented status, and refreshes (database writes) go through meanwhile."""
    make_user(db)
    server = live_server(
        PASSWORD_HASH_MEMORY_KIB="19456",
        PASSWORD_HASH_TIME_COST="2",
        DATABASE_POOL_SIZE="2",
        # Room for the whole flood: shedding past the queue limit is tested in tests/faults.
        PASSWORD_HASH_QUEUE_LIMIT=str(FLOOD),
    )
    with httpx2.Client(base_url=server.url, timeout=TIMEOUT_SECONDS) as client:
        pair = login(client)

        def wrong_login(i: int) -> int:
            with httpx2.Client(base_url=server.url, timeout=TIMEOUT_SECONDS) as flooder:
                # One guess per address: the account throttle never answers before argon2.
                body = {"email": f"guess{i}@example.com", "password": "not the password"}
                return flooder.post("/account/login", json=body).status_code

        with ThreadPoolExecutor(max_workers=FLOOD) as pool:
            flood = [pool.submit(wrong_login, i) for i in range(FLOOD)]
            refreshed = client.post(
                "/account/refresh", json={"refresh_token": pair["refresh_token"]}
            )
            protected = client.get("/test", headers=bearer(refreshed.json()["access_token"]))
            statuses = [future.result() for future in flood]

        assert refreshed.status_code == 200, refreshed.text
        assert protected.status_code == 200, protected.text
        assert statuses == [400] * FLOOD
