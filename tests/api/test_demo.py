"""GET /demo: the cookie-mode browser client, its files and its Content-Security-Policy."""

import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from tests.factories import bearer, login, make_user

ASSETS = [
    pytest.param("/demo/demo.js", "text/javascript", id="script"),
    pytest.param("/demo/demo.css", "text/css", id="styles"),
]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data.strip()


def parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def csp_directives(header: str) -> dict[str, str]:
    directives = (part.strip().split(" ", 1) for part in header.split(";") if part.strip())
    return {name: value for name, value in directives}


@pytest.fixture
def cookie_mode_client(settings_env: dict[str, str]) -> Iterator[TestClient]:
    settings = Settings(**{**settings_env, "TOKEN_COOKIE_MODE": "true"})  # type: ignore[arg-type]
    with TestClient(create_app(settings), base_url="http://testserver") as test_client:
        yield test_client


def test_the_demo_page_is_served_with_a_strict_content_security_policy(
    client: TestClient,
) -> None:
    response = client.get("/demo")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = csp_directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    # The QR code of a two-factor setup is shown from a blob: URL; nothing else is added.
    assert policy["img-src"] == "'self' blob:"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_demo_page_has_no_inline_script_or_style(client: TestClient) -> None:
    page = parse(client.get("/demo").text)

    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts == [{"type": "module", "src": "/demo/demo.js"}]
    assert page.script_text == ""
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), tag
        assert "style" not in attrs, tag
        for name in ("src", "href"):
            assert not (attrs.get(name) or "").startswith(("http:", "https:", "//")), tag


@pytest.mark.parametrize(("path", "media_type"), ASSETS)
def test_the_demo_files_are_served_from_the_package_under_the_same_policy(
    client: TestClient, path: str, media_type: str
) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.content
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/demo/index.html", id="the-page-by-name"),
        pytest.param("/demo/nothing.js", id="unknown-file"),
        pytest.param("/demo/..%2Fmain.py", id="path-traversal"),
    ],
)
def test_any_other_demo_path_is_a_404_problem(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_the_demo_page_says_cookie_mode_is_needed_when_it_is_off(client: TestClient) -> None:
    html = client.get("/demo").text

    body = next(attrs for tag, attrs in parse(html).tags if tag == "body")
    assert body["data-cookie-mode"] == "off"
    assert "TOKEN_COOKIE_MODE=true" in html


def test_the_demo_page_tells_its_script_that_cookie_mode_is_on(
    cookie_mode_client: TestClient,
) -> None:
    html = cookie_mode_client.get("/demo").text

    body = next(attrs for tag, attrs in parse(html).tags if tag == "body")
    assert body["data-cookie-mode"] == "on"


def test_the_demo_script_keeps_tokens_out_of_web_storage_and_never_writes_a_cookie(
    client: TestClient,
) -> None:
    lines = client.get("/demo/demo.js").text.splitlines()
    script = "\n".join(line for line in lines if not line.strip().startswith("//"))

    assert not re.search(r"\b(localStorage|sessionStorage|indexedDB)\s*[.\[]", script)
    assert not re.search(r"document\.cookie\s*=", script)
    assert "eval(" not in script


def test_the_demo_is_not_part_of_the_api_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert not [path for path in paths if path.startswith("/demo")]


OTPAUTH_URI = "otpauth://totp/JWT%20auth%20API:ada%40example.com?secret=JBSWY3DPEHPK3PXP"


@pytest.fixture
def access_token(client: TestClient, db: Session) -> str:
    make_user(db)
    token: str = login(client)["access_token"]
    return token


def test_the_demo_draws_an_otpauth_uri_as_an_svg_qr_code_that_is_never_cached(
    client: TestClient, access_token: str
) -> None:
    response = client.post("/demo/qr", json={"uri": OTPAUTH_URI}, headers=bearer(access_token))

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["Cache-Control"] == "no-store"
    svg = re.match(rb'<svg xmlns="http://www.w3.org/2000/svg" width="(\d+)"', response.content)
    assert svg is not None
    assert int(svg[1]) > 0
    assert response.content.rstrip().endswith(b"</svg>")
    # Only drawing: no script and no link inside the image.
    assert b"<script" not in response.content
    assert b"href" not in response.content


def test_the_qr_code_needs_a_signed_in_caller(client: TestClient) -> None:
    response = client.post("/demo/qr", json={"uri": OTPAUTH_URI})

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("https://example.com/", id="not-otpauth"),
        pytest.param("otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP", id="not-totp"),
        pytest.param("otpauth://totp/" + "a" * 1100, id="too-long"),
    ],
)
def test_the_qr_code_is_only_drawn_for_a_totp_uri(
    client: TestClient, access_token: str, uri: str
) -> None:
    response = client.post("/demo/qr", json={"uri": uri}, headers=bearer(access_token))

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
