"""Login throttling per canonical email, and one request bucket per client IP."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.runtime import Runtime
from tests.conftest import SERVE, LiveServer
from tests.factories import DEFAULT_PASSWORD, bearer, make_user

MAX_FAILURES = 5
WINDOW_SECONDS = 900
WRONG = {"email": "ada@example.com", "password": "not the password at all"}
RIGHT = {"email": "ada@example.com", "password": DEFAULT_PASSWORD}


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {
        **settings_env,
        "LOGIN_MAX_FAILURES": str(MAX_FAILURES),
        "LOGIN_WINDOW_SECONDS": str(WINDOW_SECONDS),
    }


@pytest.fixture
def user_client(client: TestClient, db: Session) -> TestClient:
    make_user(db)
    return client


def token_form(body: dict[str, str]) -> dict[str, str]:
    return {"grant_type": "password", "username": body["email"], "password": body["password"]}


def assert_retry_after(
    response: httpx2.Response | httpx2.Response, window_seconds: int = WINDOW_SECONDS
) -> None:
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= window_seconds


def test_five_failures_answer_400_and_the_sixth_attempt_429_even_with_the_right_password(
    user_client: TestClient,
) -> None:
    statuses = [user_client.post("/account/login", json=WRONG).status_code for _ in range(5)]
    throttled = user_client.post("/account/login", json=RIGHT)

    assert statuses == [400] * MAX_FAILURES
    assert throttled.status_code == 429
    assert throttled.headers["content-type"] == "application/problem+json"
    assert throttled.json()["type"] == "/problems/too-many-requests"
    assert_retry_after(throttled)


def test_unknown_emails_are_throttled_alike(client: TestClient, database_url: str) -> None:
    body = {"email": "nobody@example.com", "password": "whatever it is"}
    statuses = [client.post("/account/login", json=body).status_code for _ in range(6)]

    assert statuses == [400] * MAX_FAILURES + [429]


def test_failures_count_per_canonical_email_whatever_its_case(
    client: TestClient, db: Session
) -> None:
    make_user(db, email="ada@x.com")
    for variant in ("ADA@x.com", " ada@X.COM", "Ada@x.Com", "aDa@x.com", "ada@x.com"):
        response = client.post("/account/login", json={**WRONG, "email": variant})
        assert response.status_code == 400

    right = {"email": "ada@x.com", "password": DEFAULT_PASSWORD}
    assert client.post("/account/login", json=right).status_code == 429


def test_login_and_token_endpoint_failures_add_up(user_client: TestClient) -> None:
    for _ in range(3):
        assert user_client.post("/account/login", json=WRONG).status_code == 400
    for _ in range(2):
        assert user_client.post("/account/token", data=token_form(WRONG)).status_code == 400

    throttled = user_client.post("/account/token", data=token_form(RIGHT))

    assert throttled.status_code == 429
    assert throttled.json()["error"] == "temporarily_unavailable"
    assert throttled.json()["error_description"]
    assert_retry_after(throttled)
    assert user_client.post("/account/login", json=RIGHT).status_code == 429


def test_a_successful_login_clears_the_count(user_client: TestClient) -> None:
    for _ in range(MAX_FAILURES - 1):
        assert user_client.post("/account/login", json=WRONG).status_code == 400
    assert user_client.post("/account/login", json=RIGHT).status_code == 200

    statuses = [user_client.post("/account/login", json=WRONG).status_code for _ in range(6)]

    assert statuses == [400] * MAX_FAILURES + [429]


def test_a_throttled_attempt_verifies_no_password(user_client: TestClient, app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    for _ in range(MAX_FAILURES):
        user_client.post("/account/login", json=WRONG)
    before = runtime.hasher.verifications

    assert user_client.post("/account/login", json=RIGHT).status_code == 429
    assert runtime.hasher.verifications == before


def test_other_accounts_are_not_throttled(user_client: TestClient, db: Session) -> None:
    make_user(db, email="grace@example.com")
    for _ in range(MAX_FAILURES + 1):
        user_client.post("/account/login", json=WRONG)

    other = {"email": "grace@example.com", "password": DEFAULT_PASSWORD}
    assert user_client.post("/account/login", json=other).status_code == 200


def test_concurrent_guesses_cannot_slip_past_the_count(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    make_user(db)
    server = live_server(
        LOGIN_MAX_FAILURES=str(MAX_FAILURES), LOGIN_WINDOW_SECONDS=str(WINDOW_SECONDS)
    )

    def guess(_: int) -> int:
        return httpx2.post(f"{server.url}/account/login", json=WRONG, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = sorted(pool.map(guess, range(20)))

    assert statuses == [400] * MAX_FAILURES + [429] * 15


class TestIpRateLimit:
    @pytest.fixture
    def settings_env(self, settings_env: dict[str, str]) -> dict[str, str]:
        return {**settings_env, "IP_RATE_LIMIT": "4/hour", "LOGIN_MAX_FAILURES": "100"}

    def test_login_token_refresh_and_register_share_one_bucket_per_client_ip(
        self, client: TestClient
    ) -> None:
        calls = [
            client.post("/account/login", json=WRONG),
            client.post("/account/token", data=token_form(WRONG)),
            client.post("/account/refresh", json={"refresh_token": "unknown"}),
            client.post("/account/register", json={"email": "x@example.com", "password": "p"}),
        ]
        assert [call.status_code for call in calls] == [400, 400, 401, 422]

        limited = client.post("/account/login", json=WRONG)
        assert limited.status_code == 429
        assert_retry_after(limited, window_seconds=3600)
        token_limited = client.post("/account/token", data=token_form(WRONG))
        assert token_limited.status_code == 429
        assert token_limited.json()["error"] == "temporarily_unavailable"

    def test_protected_routes_are_not_in_the_bucket(self, client: TestClient, db: Session) -> None:
        make_user(db)
        token = client.post("/account/login", json=RIGHT).json()["access_token"]
        for _ in range(10):
            assert client.get("/test", headers=bearer(token)).status_code == 200


def test_an_empty_ip_rate_limit_disables_it(client: TestClient) -> None:
    statuses = {
        client.post("/account/refresh", json={"refresh_token": "x"}).status_code for _ in range(30)
    }
    assert statuses == {401}


@pytest.mark.parametrize(
    ("trusted_proxies", "separate_buckets"),
    [pytest.param("", False, id="untrusted"), pytest.param("127.0.0.1", True, id="trusted")],
)
def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    live_server: Callable[..., LiveServer], trusted_proxies: str, separate_buckets: bool
) -> None:
    server = live_server(command=SERVE, IP_RATE_LIMIT="2/hour", TRUSTED_PROXIES=trusted_proxies)

    def refresh(forwarded_for: str) -> int:
        return httpx2.post(
            f"{server.url}/account/refresh",
            json={"refresh_token": "unknown"},
            headers={"X-Forwarded-For": forwarded_for},
        ).status_code

    statuses = [refresh(f"203.0.113.{i}") for i in range(1, 5)]

    assert statuses == ([401] * 4 if separate_buckets else [401, 401, 429, 429])
