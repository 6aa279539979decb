"""Cookie mode: a request that would set the refresh cookie (login, token endpoint,
refresh) from another origin is refused, 403 /problems/cross-site-request, before any
credential is looked at (API.md, "Hardening rules")."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.models import RefreshToken
from tests.factories import DEFAULT_PASSWORD, make_user

LOGIN = {"email": "ada@example.com", "password": DEFAULT_PASSWORD}


def browser(settings_env: dict[str, str], **overrides: str) -> TestClient:
    env = {**settings_env, "TOKEN_COOKIE_MODE": "true", **overrides}
    return TestClient(create_app(Settings(**env)), base_url="https://testserver")  # type: ignore[arg-type]


@pytest.fixture
def ada(db: Session) -> None:
    make_user(db)


@pytest.fixture
def cookie_client(settings_env: dict[str, str], ada: None) -> Iterator[TestClient]:
    with browser(settings_env, CORS_ORIGINS="https://app.example.com") as client:
        yield client


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("https://testserver", id="own-origin"),
        pytest.param("https://testserver:443", id="own-origin-explicit-port"),
        pytest.param("http://testserver", id="the-issuer"),
        pytest.param("https://app.example.com", id="a-cors-origin"),
    ],
)
def test_a_login_from_an_allowed_origin_sets_the_cookies(
    cookie_client: TestClient, origin: str
) -> None:
    response = cookie_client.post("/account/login", json=LOGIN, headers={"Origin": origin})

    assert response.status_code == 200, response.text
    assert "refresh_token=" in response.headers["set-cookie"]


def test_a_request_with_no_origin_is_no_browsers_and_is_served(cookie_client: TestClient) -> None:
    assert cookie_client.post("/account/login", json=LOGIN).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "https://evil.example"}, id="foreign"),
        pytest.param({"Origin": "http://testserver:8000"}, id="issuer-host-other-port"),
        pytest.param({"Origin": "https://app.example.com.evil.example"}, id="suffix"),
        pytest.param({"Origin": "null"}, id="null-not-listed"),
        pytest.param({"Origin": "not an origin"}, id="garbage"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-site"),
        pytest.param(
            {"Sec-Fetch-Site": "cross-site", "Origin": "https://testserver"},
            id="sec-fetch-site-wins",
        ),
    ],
)
@pytest.mark.parametrize("path", ["/account/login", "/account/token", "/account/refresh"])
def test_a_cross_site_request_is_403_and_sets_nothing(
    cookie_client: TestClient, db: Session, headers: dict[str, str], path: str
) -> None:
    bodies = {
        "/account/login": {"json": LOGIN},
        "/account/token": {
            "data": {
                "grant_type": "password",
                "username": LOGIN["email"],
                "password": LOGIN["password"],
            }
        },
        "/account/refresh": {"json": {}},
    }

    response = cookie_client.post(path, headers=headers, **bodies[path])  # type: ignore[arg-type]

    assert response.status_code == 403
    # problem+json on the token endpoint too: it is no OAuth error.
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/cross-site-request"
    assert "set-cookie" not in response.headers
    assert db.scalars(select(RefreshToken.id)).all() == []


def test_null_is_allowed_only_when_listed(settings_env: dict[str, str], ada: None) -> None:
    with browser(settings_env, CORS_ORIGINS="null") as client:
        response = client.post("/account/login", json=LOGIN, headers={"Origin": "null"})

    assert response.status_code == 200, response.text


def test_without_cookie_mode_nothing_is_checked(client: TestClient, ada: None) -> None:
    response = client.post("/account/login", json=LOGIN, headers={"Origin": "https://evil.example"})

    assert response.status_code == 200
