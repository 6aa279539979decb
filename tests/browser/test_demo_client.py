"""The /demo client in a real browser, in cookie mode: login, calls, silent single-flight refresh
across access-token expiries, logout and logout everywhere."""

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx2
import jwt
import pytest
from playwright.sync_api import BrowserContext, Page, Response, Route, expect
from sqlalchemy.orm import Session

from tests.browser.conftest import COOKIE_MODE, DEMO_EMAIL, ReadmeImage, refresh_tokens
from tests.conftest import LiveServer
from tests.factories import DEFAULT_PASSWORD, bearer

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("demo_user")]

GREETING = "Only authenticated user can consume this endpoint"
# Short enough to cross several expiries in a test, long enough to refresh a second before.
SHORT_ACCESS_TTL = 4


class Traffic:
    """The API responses the page saw: (method, path, status)."""

    def __init__(self, page: Page, server: LiveServer) -> None:
        self.server = server
        self.seen: list[tuple[str, str, int]] = []
        page.on("response", self._record)

    def _record(self, response: Response) -> None:
        if response.url.startswith(self.server.url):
            path = response.url.removeprefix(self.server.url)
            self.seen.append((response.request.method, path, response.status))

    def statuses(self, method: str, path: str) -> list[int]:
        return [status for m, p, status in self.seen if (m, p) == (method, path)]


def start(live_server: Callable[..., LiveServer], **settings: Any) -> LiveServer:
    return live_server(**COOKIE_MODE, **settings)


def log_in(page: Page, server: LiveServer) -> dict[str, Any]:
    """Log in through the page; the token pair the page received."""
    page.goto(f"{server.url}/demo")
    page.locator("#email").fill(DEMO_EMAIL)
    page.locator("#password").fill(DEFAULT_PASSWORD)
    with page.expect_response("**/account/login") as login_response:
        page.locator("#login").click()
    expect(page.locator("#session-panel")).to_be_visible()
    expect(page.locator("#who")).to_have_text(DEMO_EMAIL)
    pair: dict[str, Any] = login_response.value.json()
    return pair


def shown_claims(page: Page) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(page.locator("#claims").inner_text())
    return claims


def refresh_count(page: Page) -> int:
    return int(page.locator("#refresh-count").inner_text())


def wait_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.time()))


def test_the_demo_client_logs_in_calls_test_and_shows_the_claims_and_a_countdown(
    page: Page,
    context: BrowserContext,
    live_server: Callable[..., LiveServer],
    console_errors: list[str],
    readme_image: ReadmeImage,
) -> None:
    server = start(live_server)

    pair = log_in(page, server)
    page.locator("#call-test").click()

    expect(page.locator("#result")).to_have_text(f"200 {GREETING}")
    claims = shown_claims(page)
    assert claims["email"] == DEMO_EMAIL
    assert {"sub", "sid", "jti", "exp", "iat"} <= claims.keys()
    # The default 20 minutes, counted from the second before the server's, and ticking.
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^19 min 5\d s$"))
    expect(page.locator("#session-ends")).to_contain_text("6 d 23 h")
    assert console_errors == []
    readme_image(page, "demo-client.png", page.locator("section:has(#log)"))
    # The body had no refresh token; the cookies hold it, out of every script's reach.
    assert "refresh_token" not in pair
    cookies = {cookie["name"]: cookie for cookie in context.cookies()}
    assert set(cookies) == {"refresh_token", "csrf_token"}
    assert cookies["refresh_token"]["httpOnly"] is True
    assert cookies["refresh_token"]["sameSite"] == "Strict"
    assert cookies["refresh_token"]["path"] == "/account"
    script_cookies = page.evaluate("document.cookie")
    assert "refresh_token" not in script_cookies
    assert "csrf_token=" in script_cookies
    # The access token stays in the page's memory.
    assert all(pair["access_token"] not in cookie["value"] for cookie in cookies.values())
    storage = page.evaluate("() => JSON.stringify({...localStorage, ...sessionStorage})")
    assert storage == "{}"


def test_the_demo_client_refreshes_silently_before_each_access_token_expires(
    page: Page,
    live_server: Callable[..., LiveServer],
    db: Session,
    console_errors: list[str],
) -> None:
    server = start(live_server, TOKEN_ACCESS_TTL_SECONDS=SHORT_ACCESS_TTL)
    traffic = Traffic(page, server)
    log_in(page, server)
    first = shown_claims(page)

    # Past the first access token's expiry, and the second's.
    wait_until(first["exp"] + SHORT_ACCESS_TTL + 0.5)
    page.locator("#call-test").click()

    expect(page.locator("#result")).to_have_text(f"200 {GREETING}")
    assert refresh_count(page) >= 2
    assert shown_claims(page)["jti"] != first["jti"]
    assert shown_claims(page)["sid"] == first["sid"]
    # Refreshed before expiry: no call ever met an expired token.
    assert set(traffic.statuses("POST", "/account/refresh")) == {200}
    assert traffic.statuses("GET", "/test") == [200]
    rows = refresh_tokens(db)
    assert all(row.revoked_at is None for row in rows)
    assert [row.spent_at is None for row in rows] == [False] * (len(rows) - 1) + [True]
    assert console_errors == []


def test_parallel_calls_that_need_a_refresh_share_one_and_do_not_trip_reuse_detection(
    page: Page,
    live_server: Callable[..., LiveServer],
    db: Session,
) -> None:
    server = start(live_server, TOKEN_ACCESS_TTL_SECONDS=SHORT_ACCESS_TTL)
    traffic = Traffic(page, server)
    log_in(page, server)
    # No timer: the token expires, and the five calls below find it stale all at once.
    page.locator("#auto-refresh").uncheck()
    expect(page.locator("#countdown")).to_have_text(
        "expired", timeout=(SHORT_ACCESS_TTL + 2) * 1000
    )

    page.locator("#call-parallel").click()

    expect(page.locator("#result")).to_have_text("5 calls: 200, 200, 200, 200, 200")
    assert traffic.statuses("POST", "/account/refresh") == [200]
    assert refresh_count(page) == 1
    rows = refresh_tokens(db)
    assert len(rows) == 2
    assert all(row.revoked_at is None for row in rows)
    # And the session goes on.
    page.locator("#call-test").click()
    expect(page.locator("#result")).to_have_text(f"200 {GREETING}")


def test_parallel_calls_made_while_a_refresh_is_under_way_wait_for_it(
    page: Page,
    live_server: Callable[..., LiveServer],
    db: Session,
) -> None:
    server = start(live_server, TOKEN_ACCESS_TTL_SECONDS=SHORT_ACCESS_TTL)
    traffic = Traffic(page, server)
    log_in(page, server)
    page.locator("#auto-refresh").uncheck()
    expect(page.locator("#countdown")).to_have_text(
        "expired", timeout=(SHORT_ACCESS_TTL + 2) * 1000
    )
    # Hold the refresh in the browser until the other calls have queued behind it.
    held: list[Route] = []
    page.route("**/account/refresh", lambda route: held.append(route))

    page.locator("#call-test").click()
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)

    page.locator("#call-parallel").click()
    page.wait_for_timeout(500)
    assert len(held) == 1
    held[0].continue_()

    # Six calls finish in any order: the activity log keeps every result.
    activity = page.locator("#log")
    expect(activity).to_contain_text("5 parallel GET /test: 200, 200, 200, 200, 200")
    expect(activity).to_contain_text(f"GET /test: 200 {GREETING}")
    assert traffic.statuses("POST", "/account/refresh") == [200]
    assert traffic.statuses("GET", "/test") == [200] * 6
    assert all(row.revoked_at is None for row in refresh_tokens(db))


def test_a_reload_resumes_the_session_with_one_refresh(
    page: Page, live_server: Callable[..., LiveServer]
) -> None:
    server = start(live_server)
    first = log_in(page, server)

    page.reload()

    expect(page.locator("#session-panel")).to_be_visible()
    expect(page.locator("#refresh-count")).to_have_text("1")
    page.locator("#call-test").click()
    expect(page.locator("#result")).to_have_text(f"200 {GREETING}")
    first_claims = jwt.decode(first["access_token"], options={"verify_signature": False})
    assert shown_claims(page)["jti"] != first_claims["jti"]
    assert shown_claims(page)["sid"] == first_claims["sid"]


def test_logging_out_ends_the_session_and_clears_the_cookies(
    page: Page,
    context: BrowserContext,
    live_server: Callable[..., LiveServer],
    db: Session,
) -> None:
    server = start(live_server)
    pair = log_in(page, server)

    page.locator("#logout").click()

    expect(page.locator("#login-panel")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Logged out.")
    assert context.cookies() == []
    assert all(row.revoked_at is not None for row in refresh_tokens(db))
    response = httpx2.get(f"{server.url}/test", headers=bearer(pair["access_token"]))
    assert response.status_code == 401
    # Nothing to resume after a reload.
    page.reload()
    expect(page.locator("#login-panel")).to_be_visible()


def test_logging_out_everywhere_ends_every_session_of_the_account(
    page: Page,
    context: BrowserContext,
    live_server: Callable[..., LiveServer],
    db: Session,
) -> None:
    server = start(live_server)
    elsewhere = httpx2.post(
        f"{server.url}/account/login", json={"email": DEMO_EMAIL, "password": DEFAULT_PASSWORD}
    ).json()
    log_in(page, server)

    page.locator("#logout-all").click()

    expect(page.locator("#login-panel")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("Logged out everywhere")
    assert context.cookies() == []
    rows = refresh_tokens(db)
    assert len(rows) == 2
    assert all(row.revoked_at is not None for row in rows)
    response = httpx2.get(f"{server.url}/test", headers=bearer(elsewhere["access_token"]))
    assert response.status_code == 401


def test_the_demo_says_that_it_needs_cookie_mode_when_the_mode_is_off(
    page: Page, live_server: Callable[..., LiveServer], console_errors: list[str]
) -> None:
    server = live_server()

    page.goto(f"{server.url}/demo")

    expect(page.locator("#cookie-mode-off")).to_be_visible()
    expect(page.locator("#cookie-mode-off")).to_contain_text("TOKEN_COOKIE_MODE=true")
    expect(page.locator("#login-panel")).to_be_hidden()
    assert console_errors == []
