"""Cross-site request forgery against cookie mode, in a real browser: a page of another origin
auto-submits a form to /account/refresh, /account/logout or /account/token while the victim is
logged in.

From another site the browser does not send the SameSite=Strict refresh cookie at all; from
another origin of the same site (another port) it does. A route that sets the refresh cookie
refuses either by the request's Origin (403 cross-site-request); logout refuses the cookie
without the X-CSRF-Token header. Either way the victim's refresh token is not spent, and a
login posted from elsewhere cannot put the browser in the attacker's session (login CSRF)."""

import html
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy.orm import Session

from tests.browser.conftest import COOKIE_MODE, DEMO_EMAIL, refresh_tokens
from tests.conftest import LiveServer
from tests.factories import DEFAULT_PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("demo_user")]


class _Site(ThreadingHTTPServer):
    page = b""


class _Handler(BaseHTTPRequestHandler):
    server: _Site

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.server.page)))
        self.end_headers()
        self.wfile.write(self.server.page)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def other_site() -> Iterator[Callable[..., int]]:
    """An http.server on 127.0.0.1 serving one page that auto-submits a form to `action`
    (with `fields` as a urlencoded form, else an empty text/plain body); returns its port."""
    site = _Site(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()

    def serve(action: str, fields: dict[str, str] | None = None) -> int:
        # A plain form: what any site can make a browser send, with no custom header.
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, value in (fields or {}).items()
        )
        enctype = "application/x-www-form-urlencoded" if fields else "text/plain"
        site.page = (
            "<!doctype html><title>A page of another site</title>"
            f'<form id="forged" method="post" action="{action}" enctype="{enctype}">'
            f"{inputs}</form>"
            "<script>document.getElementById('forged').submit()</script>"
        ).encode()
        return int(site.server_address[1])

    yield serve
    site.shutdown()
    site.server_close()
    thread.join(timeout=5)


def log_in(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.url}/demo")
    page.locator("#password").fill(DEFAULT_PASSWORD)
    page.locator("#login").click()
    expect(page.locator("#who")).to_have_text(DEMO_EMAIL)


Answer = tuple[int, str | None]


@pytest.mark.parametrize(
    ("path", "cross_site", "same_site"),
    [
        # Refresh sets the refresh cookie: another origin is refused before anything else.
        pytest.param(
            "/account/refresh",
            (403, "cross-site-request"),
            (403, "cross-site-request"),
            id="refresh",
        ),
        # Logout sets nothing: without the cookie it has nothing to end, and with it the
        # double-submit header is missing.
        pytest.param("/account/logout", (204, None), (403, "csrf-failed"), id="logout"),
    ],
)
@pytest.mark.parametrize(
    ("host", "cookie_sent"),
    [
        # localhost and 127.0.0.1 are different sites: SameSite=Strict withholds the cookie.
        pytest.param("localhost", False, id="cross-site"),
        # Another port is another origin of the same site: the cookie goes, the header does not.
        pytest.param("127.0.0.1", True, id="same-site-other-origin"),
    ],
)
def test_a_form_posted_from_another_origin_spends_no_refresh_token(
    page: Page,
    context: BrowserContext,
    live_server: Callable[..., LiveServer],
    other_site: Callable[..., int],
    db: Session,
    path: str,
    cross_site: Answer,
    same_site: Answer,
    host: str,
    cookie_sent: bool,
) -> None:
    server = live_server(**COOKIE_MODE)
    log_in(page, server)
    port = other_site(f"{server.url}{path}")
    forger = context.new_page()

    with forger.expect_response(f"{server.url}{path}") as forged:
        forger.goto(f"http://{host}:{port}/", wait_until="commit")

    response = forged.value
    cookie_header = response.request.all_headers().get("cookie", "")
    assert ("refresh_token=" in cookie_header) is cookie_sent
    status, kind = same_site if cookie_sent else cross_site
    assert response.status == status
    if kind is not None:
        assert response.json()["type"] == f"/problems/{kind}"
    [row] = refresh_tokens(db)
    assert row.spent_at is None
    assert row.revoked_at is None
    # The victim's session carries on: the page still refreshes with its cookie.
    page.reload()
    expect(page.locator("#refresh-count")).to_have_text("1")
    assert {cookie["name"] for cookie in context.cookies()} == {"refresh_token", "csrf_token"}


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("localhost", id="cross-site"),
        pytest.param("127.0.0.1", id="same-site-other-origin"),
    ],
)
def test_a_login_posted_from_another_origin_leaves_the_victims_session_alone(
    page: Page,
    context: BrowserContext,
    live_server: Callable[..., LiveServer],
    other_site: Callable[..., int],
    db: Session,
    host: str,
) -> None:
    """Login CSRF: the attacker's page posts the attacker's own credentials to the token
    endpoint, hoping the browser stores the attacker's session in place of the victim's."""
    make_user(db, email="attacker@example.com", password="the attacker's own passphrase")
    server = live_server(**COOKIE_MODE)
    log_in(page, server)
    cookies_before = sorted((c["name"], c["value"]) for c in context.cookies())
    port = other_site(
        f"{server.url}/account/token",
        {
            "grant_type": "password",
            "username": "attacker@example.com",
            "password": "the attacker's own passphrase",
        },
    )
    forger = context.new_page()

    with forger.expect_response(f"{server.url}/account/token") as forged:
        forger.goto(f"http://{host}:{port}/", wait_until="commit")

    response = forged.value
    assert response.status == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/cross-site-request"
    assert sorted((c["name"], c["value"]) for c in context.cookies()) == cookies_before
    # No session began for the attacker, and the victim's is untouched.
    [row] = refresh_tokens(db)
    assert row.spent_at is None
    assert row.revoked_at is None
    page.reload()
    expect(page.locator("#who")).to_have_text(DEMO_EMAIL)
