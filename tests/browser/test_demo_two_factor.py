"""Two-factor in the /demo client, in a real browser: enrol through the page (the QR code drawn
by the service, the secret as text, a code to confirm, the recovery codes once), then log in
again, where the page asks for a code and sends the login again with it."""

import json
import re
import time
from collections.abc import Callable

import pyotp
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session

from app.models import User
from tests.browser.conftest import COOKIE_MODE, DEMO_EMAIL
from tests.conftest import LiveServer
from tests.factories import DEFAULT_PASSWORD, make_user

pytestmark = pytest.mark.browser

TOTP_STEP = 30
LOGIN_WITHOUT_CODE = (
    "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
)


@pytest.fixture
def verified_demo_user(db: Session) -> User:
    # While mail is enabled an unverified address cannot enrol a factor.
    return make_user(db, email=DEMO_EMAIL, email_verified=True)


def submit_login(page: Page) -> None:
    with page.expect_response("**/account/login"):
        page.locator("#login").click()


@pytest.mark.usefixtures("verified_demo_user")
def test_the_demo_client_enables_two_factor_and_then_logs_in_with_a_code(
    page: Page,
    live_server: Callable[..., LiveServer],
    console_errors: list[str],
) -> None:
    server = live_server(**COOKIE_MODE)
    page.goto(f"{server.url}/demo")
    page.locator("#email").fill(DEMO_EMAIL)
    page.locator("#password").fill(DEFAULT_PASSWORD)
    submit_login(page)
    expect(page.locator("#who")).to_have_text(DEMO_EMAIL)
    expect(page.locator("#tf-status")).to_contain_text("Off")

    # Enrol: the password, then a QR code and the secret.
    page.locator("#tf-password").fill(DEFAULT_PASSWORD)
    with page.expect_response("**/demo/qr") as qr_response:
        page.locator("#tf-begin").click()
    assert qr_response.value.headers["content-type"] == "image/svg+xml"
    assert qr_response.value.headers["cache-control"] == "no-store"
    qr = page.locator("#tf-qr")
    expect(qr).to_be_visible()
    expect(qr).to_have_attribute("src", re.compile(r"^blob:"))
    # decode() waits for the image and fails when it cannot be shown (a CSP block included).
    assert qr.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    box = qr.bounding_box()
    assert box is not None
    assert box["width"] > 0
    assert box["height"] > 0
    secret = page.locator("#tf-secret").inner_text().strip()
    totp = pyotp.TOTP(secret)

    # Confirm with the current code: ten recovery codes, shown once.
    page.locator("#tf-code").fill(totp.now())
    with page.expect_response("**/account/2fa/totp/confirm") as confirmed:
        page.locator("#tf-confirm").click()
    assert confirmed.value.status == 200
    codes = page.locator("#tf-recovery-codes li")
    expect(codes).to_have_count(10)
    assert codes.all_inner_texts() == confirmed.value.json()["recovery_codes"]
    expect(page.locator("#tf-qr")).to_be_hidden()
    expect(page.locator("#tf-secret")).to_have_text("")
    page.locator("#tf-recovery-done").click()
    expect(codes).to_have_count(0)
    expect(page.locator("#tf-status")).to_contain_text("On")

    page.locator("#logout").click()
    expect(page.locator("#login-panel")).to_be_visible()
    expect(page.locator("#otp-field")).to_be_hidden()

    # The password alone: the page asks for a code.
    page.locator("#password").fill(DEFAULT_PASSWORD)
    submit_login(page)
    expect(page.locator("#otp-field")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("two-factor")
    expect(page.locator("#session-panel")).to_be_hidden()

    # The code of the next step: the confirmation spent this one (no replay), and the
    # service accepts one step either side.
    page.locator("#otp").fill(totp.at(time.time() + TOTP_STEP))
    with page.expect_response("**/account/login") as login_response:
        page.locator("#login").click()
    assert login_response.value.status == 200
    expect(page.locator("#who")).to_have_text(DEMO_EMAIL)
    expect(page.locator("#otp-field")).to_be_hidden()
    expect(page.locator("#tf-status")).to_contain_text("On")
    expect(page.locator("#tf-begin-form")).to_be_hidden()
    # RFC 8176: the new session's tokens say that a second factor was used.
    assert {"mfa", "otp", "pwd"} <= set(json.loads(page.locator("#claims").inner_text())["amr"])
    # Chromium reports the 401 of the login without a code; nothing else (no CSP violation
    # for the blob: image, no script error).
    assert console_errors == [LOGIN_WITHOUT_CODE]


@pytest.mark.usefixtures("verified_demo_user")
def test_the_demo_client_says_so_when_the_setup_password_is_wrong(
    page: Page,
    live_server: Callable[..., LiveServer],
    console_errors: list[str],
) -> None:
    server = live_server(**COOKIE_MODE)
    page.goto(f"{server.url}/demo")
    page.locator("#password").fill(DEFAULT_PASSWORD)
    submit_login(page)
    expect(page.locator("#tf-status")).to_contain_text("Off")

    page.locator("#tf-password").fill("not the password")
    with page.expect_response("**/account/2fa/totp") as setup:
        page.locator("#tf-begin").click()

    assert setup.value.status == 400
    expect(page.locator("#status")).to_contain_text("Two-factor setup refused (400)")
    expect(page.locator("#tf-enrol")).to_be_hidden()
    expect(page.locator("#tf-begin-form")).to_be_visible()
    # The console reports the failed request itself; no script error.
    assert not [error for error in console_errors if error.startswith("pageerror")]
