"""Security headers, the request id and CORS on every response, errors and 404s included."""

import base64
import hashlib
import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy.orm import Session

from app.api.middleware import API_CONTENT_SECURITY_POLICY, new_request_id
from app.config import Settings
from app.main import create_app
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user

APP_ORIGIN = "https://app.example.com"


def assert_security_headers(response: Response, policy: str = API_CONTENT_SECURITY_POLICY) -> None:
    # ASVS 5.0 3.4.4 nosniff, 3.4.5 Referrer-Policy, 3.4.3 and 3.4.6 CSP with frame-ancestors.
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"] == policy
    assert len(response.headers.get_list("Content-Security-Policy")) == 1
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("GET", "/health", None, 200, id="health-200"),
        pytest.param("GET", "/.well-known/jwks.json", None, 200, id="jwks-200"),
        pytest.param("GET", "/openapi.json", None, 200, id="openapi-200"),
        pytest.param("GET", "/docs/static/swagger-ui.css", None, 200, id="static-file-200"),
        pytest.param("GET", "/test", None, 401, id="protected-401"),
        pytest.param("GET", "/nowhere", None, 404, id="unknown-path-404"),
        pytest.param("POST", "/health", None, 405, id="wrong-method-405"),
        pytest.param("POST", "/account/login", b"x" * (64 * 1024 + 1), 413, id="too-large-413"),
        pytest.param("POST", "/account/login", b"{}", 422, id="malformed-422"),
        pytest.param("POST", "/account/token", b"", 400, id="token-endpoint-400"),
    ],
)
def test_every_response_carries_the_security_headers(
    client: TestClient, method: str, path: str, body: bytes | None, status: int
) -> None:
    response = client.request(
        method, path, content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == status
    assert_security_headers(response)


def test_a_response_with_tokens_carries_the_security_headers_too(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    response = client.post(
        "/account/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )

    assert response.status_code == 200
    assert_security_headers(response)
    assert response.headers["Cache-Control"] == "no-store"


def inline_script_hashes(html: str) -> set[str]:
    return {
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    }


@pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect"])
def test_the_docs_pages_allow_exactly_their_inline_scripts_by_hash(
    client: TestClient, path: str
) -> None:
    response = client.get(path)

    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    directives = dict(directive.partition(" ")[::2] for directive in policy.split("; "))
    hashes = inline_script_hashes(response.text)
    assert hashes
    assert set(directives["script-src"].split()) - {"'self'"} == hashes
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert_security_headers(response, policy)


@pytest.fixture
def failing_client(settings: Settings) -> Iterator[TestClient]:
    app: FastAPI = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_an_unhandled_error_is_a_500_problem_with_the_security_headers(
    failing_client: TestClient,
) -> None:
    # Starlette answers a 500 from its outermost layer: the headers are added outside it.
    response = failing_client.get("/boom")

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "a bug" not in response.text
    assert_security_headers(response)


# X-Request-ID


def test_each_response_gets_a_fresh_uuid_as_its_request_id(client: TestClient) -> None:
    first = client.get("/health").headers["X-Request-ID"]
    second = client.get("/health").headers["X-Request-ID"]

    assert first != second
    assert str(uuid.UUID(first)) == first
    assert uuid.UUID(first).version == 4
    assert uuid.UUID(first).variant == uuid.RFC_4122


def test_generated_request_ids_are_random_version_4_uuids() -> None:
    ids = {new_request_id() for _ in range(2000)}

    assert len(ids) == 2000
    parsed = [uuid.UUID(request_id) for request_id in ids]
    assert all(str(value) in ids for value in parsed)
    assert {value.version for value in parsed} == {4}
    assert {value.variant for value in parsed} == {uuid.RFC_4122}
    # The variant character (10xx) takes each of its four values.
    assert len({str(value)[19] for value in parsed}) == 4


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("5f0c7a8e-3b1d-4c2e-9a6f-0d8e7b6a5c4d", id="uuid"),
        pytest.param("req_01HZX.abc-9", id="letters-digits-dot-dash-underscore"),
        pytest.param("a" * 64, id="64-characters"),
    ],
)
def test_a_short_safe_incoming_request_id_is_kept(client: TestClient, request_id: str) -> None:
    response = client.get("/nowhere", headers={"X-Request-ID": request_id})

    assert response.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param(b"a" * 65, id="65-characters"),
        pytest.param(b"", id="empty"),
        pytest.param(b"two words", id="space"),
        pytest.param(b'"quoted"', id="quotes"),
        pytest.param(b"id;drop=1", id="semicolon"),
        pytest.param(b"caf\xc3\xa9", id="non-ascii"),
        pytest.param(b"{json}", id="braces"),
    ],
)
def test_an_unsafe_incoming_request_id_is_replaced(client: TestClient, request_id: bytes) -> None:
    # It would reach the audit log and a response header: only a plain token is taken as is.
    response = client.get("/health", headers={b"X-Request-ID": request_id})

    replaced = response.headers["X-Request-ID"]
    assert replaced.encode() != request_id
    assert str(uuid.UUID(replaced)) == replaced


# CORS


def test_without_cors_origins_no_cross_origin_header_is_sent(client: TestClient) -> None:
    response = client.get("/health", headers={"Origin": APP_ORIGIN})
    preflight = client.options(
        "/account/login",
        headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"},
    )

    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert preflight.status_code == 405


@pytest.fixture
def cors_client(settings_env: dict[str, str]) -> Iterator[TestClient]:
    settings = Settings(**{**settings_env, "CORS_ORIGINS": f"{APP_ORIGIN}, http://localhost:5173"})  # type: ignore[arg-type]
    with TestClient(create_app(settings), base_url="http://testserver") as test_client:
        yield test_client


def test_an_allowed_origin_passes_the_preflight_with_credentials(cors_client: TestClient) -> None:
    response = cors_client.options(
        "/account/refresh",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-csrf-token",
        },
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert_security_headers(response)


def test_an_allowed_origin_reads_the_answer_and_its_challenge(
    cors_client: TestClient, db: Session
) -> None:
    response = cors_client.get("/test", headers={"Origin": "http://localhost:5173"})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    exposed = {
        name.strip().lower()
        for name in response.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert {"www-authenticate", "retry-after", "x-request-id"} <= exposed


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("https://evil.example.com", id="other-host"),
        pytest.param("https://app.example.com.evil.example", id="suffix-trick"),
        pytest.param("http://app.example.com", id="other-scheme"),
        pytest.param("null", id="null-origin"),
    ],
)
def test_another_origin_gets_no_cross_origin_permission(
    cors_client: TestClient, db: Session, origin: str
) -> None:
    make_user(db)
    token = login(cors_client)["access_token"]
    preflight = cors_client.options(
        "/account/logout-all",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    simple = cors_client.get("/account/me", headers={"Origin": origin, **bearer(token)})

    assert preflight.status_code == 400
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert simple.status_code == 200
    assert "Access-Control-Allow-Origin" not in simple.headers
