"""The pages mailed links open, in a real browser: a password reset end to end, from the
mail the relay received to a login with the new password."""

import re
from collections.abc import Callable

import httpx2
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session

from tests.conftest import LiveServer
from tests.factories import DEFAULT_PASSWORD, make_user
from tests.mail.relay import Relay, smtp_env, wait_until

pytestmark = pytest.mark.browser

NEW_PASSWORD = "a fresh and rather long passphrase"
LINK = re.compile(r"(http://\S+/account/reset-password#token=[A-Za-z0-9_-]{43})")


def test_a_password_is_reset_through_the_mailed_link(
    live_server: Callable[..., LiveServer],
    relay: Relay,
    db: Session,
    page: Page,
    console_errors: list[str],
) -> None:
    make_user(db)
    server = live_server(**smtp_env(relay.port))
    # Links point at the server the browser can reach.
    server.restart(ACCOUNT_LINK_BASE_URL=server.url)
    assert (
        httpx2.post(
            f"{server.url}/account/forgot-password", json={"email": "ada@example.com"}
        ).status_code
        == 202
    )
    wait_until(lambda: relay.to("ada@example.com"), what="the reset mail")
    [message] = relay.to("ada@example.com")
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    match = LINK.search(payload.decode())
    assert match is not None
    link = match.group(1)

    page.goto(link)
    # The token leaves the address bar at once.
    expect(page).to_have_url(f"{server.url}/account/reset-password")
    page.fill("#new-password", NEW_PASSWORD)
    page.fill("#repeat-password", NEW_PASSWORD + " typo")
    page.click("#submit")
    expect(page.locator("#status")).to_contain_text("differ")
    page.fill("#repeat-password", NEW_PASSWORD)
    page.click("#submit")
    expect(page.locator("#status")).to_contain_text("Your password is set")

    def login(password: str) -> int:
        return httpx2.post(
            f"{server.url}/account/login", json={"email": "ada@example.com", "password": password}
        ).status_code

    assert login(NEW_PASSWORD) == 200
    assert login(DEFAULT_PASSWORD) == 400
    # The same link again: the page says it is spent.
    page.goto(link)
    page.fill("#new-password", "yet another long passphrase")
    page.fill("#repeat-password", "yet another long passphrase")
    page.click("#submit")
    expect(page.locator("#status")).to_contain_text("invalid, used or expired")
    assert [error for error in console_errors if "400" not in error] == []
