"""Cookie mode for browser apps (TOKEN_COOKIE_MODE): the refresh token in an HttpOnly cookie,
a double-submit CSRF token, and the same API as before when the mode is off."""

from collections.abc import Callable, Iterator
from http.cookies import Morsel, SimpleCookie
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.models import RefreshToken
from app.security.refresh_tokens import digest
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user

PROBLEM_JSON = "application/problem+json"
CSRF_HEADER = "X-CSRF-Token"


@pytest.fixture
def cookie_mode(settings_env: dict[str, str]) -> dict[str, str]:
    settings_env["TOKEN_COOKIE_MODE"] = "true"
    return settings_env


@pytest.fixture
def browser(app: FastAPI) -> Iterator[TestClient]:
    """A client on https, as a browser would be: it sends Secure cookies back, and only to the
    paths they were set for."""
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client


# Helpers


def set_cookies(response: httpx2.Response) -> dict[str, Morsel[str]]:
    """The response's Set-Cookie headers, by cookie name."""
    cookies: dict[str, Morsel[str]] = {}
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        cookies.update(parsed)
    return cookies


def put_cookie(client: TestClient, name: str, value: str, path: str = "/") -> None:
    """Put a cookie in the jar as if the server had set it (cookielib names the host .local)."""
    client.cookies.set(name, value, domain="testserver.local", path=path)


def csrf(client: TestClient) -> dict[str, str]:
    """The double-submit header, as the app's own script would send it."""
    return {CSRF_HEADER: client.cookies["csrf_token"]}


def refresh_cookie(client: TestClient) -> str:
    return client.cookies["refresh_token"]


def token_row(db: Session, refresh_token: str) -> RefreshToken:
    """The token's row as the database holds it now."""
    db.commit()
    statement = (
        select(RefreshToken)
        .where(RefreshToken.token_digest == digest(refresh_token))
        .execution_options(populate_existing=True)
    )
    return db.scalars(statement).one()


def assert_unspent(db: Session, refresh_token: str) -> None:
    row = token_row(db, refresh_token)
    assert row.spent_at is None
    assert row.revoked_at is None


def browser_login(client: TestClient) -> dict[str, Any]:
    pair = login(client)
    assert "refresh_token" in client.cookies
    return pair


def _login(client: TestClient) -> httpx2.Response:
    return client.post(
        "/account/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )


def _refresh_by_cookie(client: TestClient) -> httpx2.Response:
    browser_login(client)
    return client.post("/account/refresh", headers=csrf(client))


def _refresh_by_body(client: TestClient) -> httpx2.Response:
    browser_login(client)
    return client.post("/account/refresh", json={"refresh_token": refresh_cookie(client)})


def _password_grant(client: TestClient) -> httpx2.Response:
    return client.post(
        "/account/token",
        data={
            "grant_type": "password",
            "username": "ada@example.com",
            "password": DEFAULT_PASSWORD,
        },
    )


def _refresh_token_grant(client: TestClient) -> httpx2.Response:
    browser_login(client)
    return client.post(
        "/account/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_cookie(client)},
    )


# Each returns the 200 response of one way of getting tokens.
ISSUERS = [
    pytest.param(_login, id="login"),
    pytest.param(_refresh_by_cookie, id="refresh-by-cookie"),
    pytest.param(_refresh_by_body, id="refresh-by-body"),
    pytest.param(_password_grant, id="token-password-grant"),
    pytest.param(_refresh_token_grant, id="token-refresh-token-grant"),
]


# What every grant sets in cookie mode


@pytest.mark.usefixtures("cookie_mode")
@pytest.mark.parametrize("issue", ISSUERS)
def test_every_grant_in_cookie_mode_sets_the_refresh_token_as_an_http_only_strict_cookie(
    browser: TestClient, db: Session, issue: Callable[[TestClient], httpx2.Response]
) -> None:
    make_user(db)

    response = issue(browser)

    assert response.status_code == 200, response.text
    cookie = set_cookies(response)["refresh_token"]
    assert cookie["httponly"] is True
    assert cookie["secure"] is True
    assert cookie["samesite"] == "strict"
    assert cookie["path"] == "/account"
    assert int(cookie["max-age"]) == response.json()["refresh_expires_in"] > 0
    assert_unspent(db, cookie.value)


@pytest.mark.usefixtures("cookie_mode")
@pytest.mark.parametrize("issue", ISSUERS)
def test_every_grant_in_cookie_mode_sets_a_script_readable_csrf_cookie_for_every_path(
    browser: TestClient, db: Session, issue: Callable[[TestClient], httpx2.Response]
) -> None:
    make_user(db)

    response = issue(browser)

    cookie = set_cookies(response)["csrf_token"]
    assert not cookie["httponly"]
    assert cookie["secure"] is True
    assert cookie["samesite"] == "strict"
    assert cookie["path"] == "/"
    assert int(cookie["max-age"]) == response.json()["refresh_expires_in"]
    # At least 256 random bits, base64url.
    assert len(cookie.value) >= 43


@pytest.mark.usefixtures("cookie_mode")
@pytest.mark.parametrize("issue", ISSUERS)
def test_every_body_that_issues_tokens_in_cookie_mode_leaves_the_refresh_token_out(
    browser: TestClient, db: Session, issue: Callable[[TestClient], httpx2.Response]
) -> None:
    make_user(db)

    response = issue(browser)

    body = response.json()
    assert "refresh_token" not in body
    assert body.keys() == {"access_token", "token_type", "expires_in", "refresh_expires_in"}
    assert set_cookies(response)["refresh_token"].value not in response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


@pytest.mark.usefixtures("cookie_mode")
@pytest.mark.parametrize("issue", ISSUERS)
def test_the_access_token_is_never_set_as_a_cookie(
    browser: TestClient, db: Session, issue: Callable[[TestClient], httpx2.Response]
) -> None:
    make_user(db)

    response = issue(browser)

    cookies = set_cookies(response)
    assert set(cookies) == {"refresh_token", "csrf_token"}
    access_token = response.json()["access_token"]
    assert all(access_token not in header for header in response.headers.get_list("set-cookie"))


@pytest.mark.usefixtures("cookie_mode")
def test_each_grant_gets_a_new_csrf_token(browser: TestClient, db: Session) -> None:
    make_user(db)
    first = set_cookies(_login(browser))["csrf_token"].value

    second = set_cookies(browser.post("/account/refresh", headers=csrf(browser)))

    assert second["csrf_token"].value != first


def test_cookie_secure_false_drops_only_the_secure_attribute(
    settings_env: dict[str, str], db: Session
) -> None:
    settings_env |= {"TOKEN_COOKIE_MODE": "true", "TOKEN_COOKIE_SECURE": "false"}
    make_user(db)
    app = create_app(Settings(**settings_env))  # type: ignore[arg-type]
    with TestClient(app, base_url="http://localhost") as client:
        response = _login(client)

        cookies = set_cookies(response)
        for name in ("refresh_token", "csrf_token"):
            assert not cookies[name]["secure"], name
            assert cookies[name]["samesite"] == "strict"
        assert cookies["refresh_token"]["httponly"] is True
        # Plain http on localhost: the cookies come back, and the refresh works.
        assert client.post("/account/refresh", headers=csrf(client)).status_code == 200


# Refresh with the cookie


@pytest.mark.usefixtures("cookie_mode")
@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-body"),
        pytest.param({"json": {}}, id="empty-object"),
    ],
)
def test_refresh_without_a_body_token_spends_the_cookie_and_sets_its_child(
    browser: TestClient, db: Session, body: dict[str, Any]
) -> None:
    make_user(db)
    browser_login(browser)
    old = refresh_cookie(browser)

    response = browser.post("/account/refresh", headers=csrf(browser), **body)

    assert response.status_code == 200, response.text
    new = set_cookies(response)["refresh_token"].value
    assert new != old
    assert token_row(db, old).spent_at is not None
    assert_unspent(db, new)
    assert browser.get("/test", headers=bearer(response.json()["access_token"])).status_code == 200


@pytest.mark.usefixtures("cookie_mode")
def test_a_refresh_token_in_the_body_needs_no_csrf_header(browser: TestClient, db: Session) -> None:
    make_user(db)
    browser_login(browser)
    token = refresh_cookie(browser)
    browser.cookies.clear()

    response = browser.post("/account/refresh", json={"refresh_token": token})

    assert response.status_code == 200, response.text
    assert token_row(db, token).spent_at is not None


@pytest.mark.usefixtures("cookie_mode")
def test_a_refresh_token_in_the_body_wins_over_the_cookie(browser: TestClient, db: Session) -> None:
    make_user(db)
    browser_login(browser)
    cookie_token = refresh_cookie(browser)
    other = login(browser)  # a second session; its cookie replaces the first
    assert "refresh_token" not in other
    body_token = refresh_cookie(browser)
    put_cookie(browser, "refresh_token", cookie_token, "/account")

    response = browser.post("/account/refresh", json={"refresh_token": body_token})

    assert response.status_code == 200, response.text
    assert token_row(db, body_token).spent_at is not None
    assert_unspent(db, cookie_token)


def _no_header(client: TestClient) -> dict[str, str]:
    return {}


def _empty_header(client: TestClient) -> dict[str, str]:
    return {CSRF_HEADER: ""}


def _another_value(client: TestClient) -> dict[str, str]:
    return {CSRF_HEADER: client.cookies["csrf_token"][:-1] + "x"}


def _the_refresh_token(client: TestClient) -> dict[str, str]:
    return {CSRF_HEADER: refresh_cookie(client)}


def _no_csrf_cookie(client: TestClient) -> dict[str, str]:
    value = client.cookies["csrf_token"]
    client.cookies.delete("csrf_token")
    return {CSRF_HEADER: value}


def _both_empty(client: TestClient) -> dict[str, str]:
    client.cookies.delete("csrf_token")
    put_cookie(client, "csrf_token", "")
    return {CSRF_HEADER: ""}


CSRF_FAILURES = [
    pytest.param(_no_header, id="no-header"),
    pytest.param(_empty_header, id="empty-header"),
    pytest.param(_another_value, id="another-value"),
    pytest.param(_the_refresh_token, id="the-refresh-token-instead"),
    pytest.param(_no_csrf_cookie, id="no-csrf-cookie"),
    pytest.param(_both_empty, id="empty-cookie-and-header"),
]


def assert_csrf_failed(response: httpx2.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == "/problems/csrf-failed"
    assert body["status"] == 403
    assert body["title"] == "CSRF check failed"
    assert "set-cookie" not in response.headers


@pytest.mark.usefixtures("cookie_mode")
@pytest.mark.parametrize("headers_for", CSRF_FAILURES)
def test_a_cookie_refresh_without_the_matching_csrf_header_is_403_and_spends_nothing(
    browser: TestClient, db: Session, headers_for: Callable[[TestClient], dict[str, str]]
) -> None:
    make_user(db)
    browser_login(browser)
    token = refresh_cookie(browser)
    csrf_token = browser.cookies["csrf_token"]

    response = browser.post("/account/refresh", headers=headers_for(browser))

    assert_csrf_failed(response)
    assert token not in response.text
    assert_unspent(db, token)
    # The session is intact: the right header refreshes it.
    put_cookie(browser, "csrf_token", csrf_token)
    assert browser.post("/account/refresh", headers=csrf(browser)).status_code == 200


@pytest.mark.usefixtures("cookie_mode")
@pytest.mark.parametrize("headers_for", CSRF_FAILURES)
def test_a_cookie_logout_without_the_matching_csrf_header_is_403_and_ends_nothing(
    browser: TestClient, db: Session, headers_for: Callable[[TestClient], dict[str, str]]
) -> None:
    make_user(db)
    browser_login(browser)
    token = refresh_cookie(browser)

    response = browser.post("/account/logout", headers=headers_for(browser))

    assert_csrf_failed(response)
    assert_unspent(db, token)


@pytest.mark.usefixtures("cookie_mode")
def test_a_spent_cookie_is_reuse_and_ends_the_session(browser: TestClient, db: Session) -> None:
    make_user(db)
    browser_login(browser)
    old = refresh_cookie(browser)
    headers = csrf(browser)
    child = browser.post("/account/refresh", headers=headers)
    assert child.status_code == 200
    new = refresh_cookie(browser)

    put_cookie(browser, "refresh_token", old, "/account")
    reuse = browser.post("/account/refresh", headers=csrf(browser))

    assert reuse.status_code == 401
    assert reuse.json()["type"] == "/problems/invalid-token"
    assert token_row(db, new).revoked_at is not None


@pytest.mark.usefixtures("cookie_mode")
def test_refresh_with_neither_body_nor_cookie_is_401(browser: TestClient, db: Session) -> None:
    response = browser.post("/account/refresh")

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == "/problems/invalid-token"
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer realm="http://testserver", error="invalid_token"'
    )


@pytest.mark.usefixtures("cookie_mode")
@pytest.mark.parametrize("path", ["/account/refresh", "/account/logout"])
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"refresh_token": 42}', id="number"),
        pytest.param(b'{"refresh_token": null}', id="null"),
        pytest.param(b'{"refresh_token": ["a"]}', id="list"),
        pytest.param(b'{"refresh_token": "a\\u0000b"}', id="nul-byte"),
        pytest.param(b'{"refresh_token": "\\ud800"}', id="lone-surrogate"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'["refresh_token"]', id="array-body"),
    ],
)
def test_a_malformed_body_is_still_422_in_cookie_mode(
    browser: TestClient, db: Session, path: str, content: bytes
) -> None:
    make_user(db)
    browser_login(browser)
    token = refresh_cookie(browser)

    response = browser.post(
        path, content=content, headers={"Content-Type": "application/json", **csrf(browser)}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert_unspent(db, token)


# Logout


def assert_clears_both_cookies(response: httpx2.Response) -> None:
    cookies = set_cookies(response)
    assert set(cookies) == {"refresh_token", "csrf_token"}
    assert cookies["refresh_token"]["path"] == "/account"
    assert cookies["csrf_token"]["path"] == "/"
    for cookie in cookies.values():
        assert cookie["max-age"] == "0"
        assert cookie.value in ("", '""')


@pytest.mark.usefixtures("cookie_mode")
def test_logout_with_the_cookie_ends_the_session_and_clears_both_cookies(
    browser: TestClient, db: Session
) -> None:
    make_user(db)
    pair = browser_login(browser)
    token = refresh_cookie(browser)

    response = browser.post("/account/logout", headers=csrf(browser))

    assert response.status_code == 204
    assert_clears_both_cookies(response)
    assert token_row(db, token).revoked_at is not None
    assert browser.get("/test", headers=bearer(pair["access_token"])).status_code == 401
    assert "refresh_token" not in browser.cookies
    assert "csrf_token" not in browser.cookies


@pytest.mark.usefixtures("cookie_mode")
def test_logout_with_a_body_token_needs_no_csrf_header_and_clears_the_cookies(
    browser: TestClient, db: Session
) -> None:
    make_user(db)
    browser_login(browser)
    token = refresh_cookie(browser)

    response = browser.post("/account/logout", json={"refresh_token": token})

    assert response.status_code == 204
    assert_clears_both_cookies(response)
    assert token_row(db, token).revoked_at is not None


@pytest.mark.usefixtures("cookie_mode")
@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-body"),
        pytest.param({"json": {}}, id="empty-object"),
    ],
)
def test_logout_with_neither_body_nor_cookie_answers_204_and_clears_nothing(
    browser: TestClient, db: Session, body: dict[str, Any]
) -> None:
    make_user(db)
    pair = login(browser)
    token = refresh_cookie(browser)
    # What a form posted from another site looks like: SameSite=Strict withheld the cookies.
    browser.cookies.clear()

    response = browser.post("/account/logout", **body)

    assert response.status_code == 204
    assert "set-cookie" not in response.headers
    assert_unspent(db, token)
    assert browser.get("/test", headers=bearer(pair["access_token"])).status_code == 200


# Cookie mode off: the API of before


def _refresh_by_body_without_cookies(client: TestClient) -> httpx2.Response:
    return client.post("/account/refresh", json={"refresh_token": login(client)["refresh_token"]})


def _refresh_token_grant_without_cookies(client: TestClient) -> httpx2.Response:
    return client.post(
        "/account/token",
        data={"grant_type": "refresh_token", "refresh_token": login(client)["refresh_token"]},
    )


@pytest.mark.parametrize(
    "issue",
    [
        pytest.param(_login, id="login"),
        pytest.param(_refresh_by_body_without_cookies, id="refresh"),
        pytest.param(_password_grant, id="token-password-grant"),
        pytest.param(_refresh_token_grant_without_cookies, id="token-refresh-token-grant"),
    ],
)
def test_without_cookie_mode_no_cookie_is_set_and_the_body_carries_the_refresh_token(
    browser: TestClient, db: Session, issue: Callable[[TestClient], httpx2.Response]
) -> None:
    make_user(db)

    response = issue(browser)

    assert response.status_code == 200, response.text
    assert "set-cookie" not in response.headers
    assert_unspent(db, response.json()["refresh_token"])


@pytest.mark.parametrize("path", ["/account/refresh", "/account/logout"])
@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({}, ["body"], id="no-body"),
        pytest.param({"json": {}}, ["body", "refresh_token"], id="empty-object"),
    ],
)
def test_without_cookie_mode_the_body_token_is_required_even_beside_a_refresh_cookie(
    client: TestClient, db: Session, path: str, body: dict[str, Any], loc: list[str]
) -> None:
    make_user(db)
    pair = login(client)
    put_cookie(client, "refresh_token", pair["refresh_token"], "/account")
    put_cookie(client, "csrf_token", "x" * 43)

    response = client.post(path, headers={CSRF_HEADER: "x" * 43}, **body)

    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"loc": loc, "msg": "Field required"}]
    assert "set-cookie" not in response.headers
    assert_unspent(db, pair["refresh_token"])


def test_without_cookie_mode_logout_sets_no_cookie(client: TestClient, db: Session) -> None:
    make_user(db)
    pair = login(client)

    response = client.post("/account/logout", json={"refresh_token": pair["refresh_token"]})

    assert response.status_code == 204
    assert "set-cookie" not in response.headers
