"""Swagger UI at /docs in a real browser: Authorize logs in through /account/token, then every
protected operation answers its documented success status from "Try it out"."""

import json
from collections.abc import Callable
from typing import Any

import httpx2
import jwt
import pytest
from playwright.sync_api import Locator, Page, expect

from app.models import User
from tests.browser.conftest import COOKIE_MODE, DEMO_EMAIL, ReadmeImage
from tests.conftest import LiveServer
from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.browser

GREETING = "Only authenticated user can consume this endpoint"
NEW_PASSWORD = "a brand new and long enough passphrase"


def open_docs(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.url}/docs")
    expect(page.locator(".information-container .title")).to_contain_text("JWT auth API")


def authorize(page: Page, email: str = DEMO_EMAIL, password: str = DEFAULT_PASSWORD) -> None:
    """Swagger UI's Authorize dialog: the OAuth2 password flow against /account/token."""
    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".modal-ux")
    dialog.locator("#oauth_username").fill(email)
    dialog.locator("#oauth_password").fill(password)
    with page.expect_response("**/account/token") as token_response:
        dialog.locator(".auth-btn-wrapper button.authorize").click()
    assert token_response.value.status == 200, token_response.value.text()
    expect(dialog.get_by_role("heading", name="Authorized")).to_be_visible()
    dialog.locator("button.btn-done").click()
    expect(dialog).to_be_hidden()


def operation(page: Page, tag: str, operation_id: str) -> Locator:
    return page.locator(f"#operations-{tag}-{operation_id}")


def try_it_out(
    page: Page,
    tag: str,
    operation_id: str,
    *,
    parameters: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """Expand the operation, Try it out, fill it in, Execute; the status and body it shows."""
    block = operation(page, tag, operation_id)
    block.locator(".opblock-summary").click()
    block.get_by_role("button", name="Try it out").click()
    for name, value in (parameters or {}).items():
        block.locator(f"input[placeholder='{name}']").fill(value)
    if body is not None:
        block.locator("textarea.body-param__text").fill(json.dumps(body))
    block.get_by_role("button", name="Execute").click()
    live = block.locator(".live-responses-table .response")
    expect(live).to_be_visible()
    status = int(live.locator(".response-col_status").inner_text().strip())
    return status, live.locator(".response-col_description").inner_text()


def other_session_id(server: LiveServer) -> str:
    """A second session of the demo user, started outside the browser."""
    response = httpx2.post(
        f"{server.url}/account/login", json={"email": DEMO_EMAIL, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    return str(claims["sid"])


# (tag, operation id, how to fill it in, documented success status, expected text)
Fill = Callable[[LiveServer], dict[str, Any]]
PROTECTED_OPERATIONS = [
    pytest.param("test", "test", lambda server: {}, 200, GREETING, id="GET-test"),
    pytest.param("account", "me", lambda server: {}, 200, DEMO_EMAIL, id="GET-me"),
    pytest.param(
        "account", "list_sessions", lambda s: {}, 200, '"current": true', id="GET-sessions"
    ),
    pytest.param(
        "account",
        "delete_session",
        lambda server: {"parameters": {"session_id": other_session_id(server)}},
        204,
        "",
        id="DELETE-session",
    ),
    pytest.param(
        "account",
        "change_password",
        lambda server: {
            "body": {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
        },
        204,
        "",
        id="POST-password",
    ),
    pytest.param("account", "logout_all", lambda server: {}, 204, "", id="POST-logout-all"),
]


@pytest.mark.usefixtures("demo_user")
@pytest.mark.parametrize(("tag", "operation_id", "fill", "status", "text"), PROTECTED_OPERATIONS)
def test_after_authorize_a_protected_operation_answers_its_success_status_from_try_it_out(
    page: Page,
    live_server: Callable[..., LiveServer],
    tag: str,
    operation_id: str,
    fill: Fill,
    status: int,
    text: str,
) -> None:
    server = live_server()
    open_docs(page, server)
    authorize(page)

    answered, shown = try_it_out(page, tag, operation_id, **fill(server))

    assert answered == status, shown
    assert text in shown


@pytest.mark.parametrize(
    "cookie_mode",
    [pytest.param(False, id="cookie-mode-off"), pytest.param(True, id="cookie-mode-on")],
)
def test_authorize_then_try_it_out_on_get_test_shows_200_with_the_sentence(
    page: Page,
    live_server: Callable[..., LiveServer],
    demo_user: User,
    readme_image: ReadmeImage,
    cookie_mode: bool,
) -> None:
    server = live_server(**(COOKIE_MODE if cookie_mode else {}))
    open_docs(page, server)

    authorize(page)
    status, shown = try_it_out(page, "test", "test")

    assert status == 200
    assert GREETING in shown
    if not cookie_mode:
        # The README's picture: the locked Authorize button, then /test and its answer.
        page.locator("#operations-tag-account").click()
        readme_image(page, "swagger-authorize.png", operation(page, "test", "test"))


@pytest.mark.usefixtures("demo_user")
def test_swagger_ui_does_not_keep_the_authorization_in_local_storage(
    page: Page, live_server: Callable[..., LiveServer]
) -> None:
    server = live_server()
    open_docs(page, server)
    authorize(page)

    stored = page.evaluate("() => JSON.stringify({...localStorage, ...sessionStorage})")
    page.reload()
    status, shown = try_it_out(page, "test", "test")

    assert stored == "{}"
    assert status == 401
    assert "authentication-required" in shown


def test_each_operation_shows_its_request_example_and_documented_errors(
    page: Page, live_server: Callable[..., LiveServer]
) -> None:
    server = live_server()
    open_docs(page, server)
    block = operation(page, "account", "refresh")

    block.locator(".opblock-summary").click()

    example = block.locator(".opblock-section-request-body .body-param__example")
    expect(example).to_contain_text('"refresh_token"')
    statuses = block.locator(".responses-table > tbody > tr.response").evaluate_all(
        "rows => rows.map(row => row.dataset.code)"
    )
    assert statuses == ["200", "401", "403", "413", "415", "422", "429"]
    expect(block.locator("tr.response[data-code='401']")).to_contain_text("WWW-Authenticate")
    expect(block.locator("tr.response[data-code='403']")).to_contain_text(
        "application/problem+json"
    )
