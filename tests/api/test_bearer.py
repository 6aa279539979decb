"""GET /test through the bearer check: RFC 6750 challenges, problem+json bodies, no echo.

The contract's section "401 on protected routes": no credentials get a bare challenge,
a bad token gets error="invalid_token" with a description, two ways of sending a token
get error="invalid_request", and a token in the query string alone is never read.
"""

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.runtime import Runtime
from app.security.keys import hmac_kid
from tests.factories import bearer, login, make_user

BARE_CHALLENGE = 'Bearer realm="http://testserver"'
INVALID_REQUEST_CHALLENGE = 'Bearer realm="http://testserver", error="invalid_request"'
GREETING = "Only authenticated user can consume this endpoint"
AUTH_PARAM = re.compile(r'([A-Za-z_]+)="((?:[^"\\]|\\.)*)"')


@pytest.fixture
def access_token(client: TestClient, db: Session) -> str:
    make_user(db)
    token: str = login(client)["access_token"]
    return token


def challenge(response: httpx2.Response) -> dict[str, str]:
    """The auth-params of the response's single Bearer challenge."""
    header = response.headers["WWW-Authenticate"]
    scheme, _, params = header.partition(" ")
    assert scheme == "Bearer", header
    return {name: re.sub(r"\\(.)", r"\1", value) for name, value in AUTH_PARAM.findall(params)}


def assert_problem(response: httpx2.Response, status: int, *secrets: str) -> dict[str, Any]:
    """A problem+json error with the RFC 9457 members that echoes none of `secrets`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    for secret in secrets:
        # The whole token, and its signature alone, appear nowhere in the answer (fragments
        # too short to be telling, like the empty signature of alg none, are skipped).
        fragments = {secret, secret.rsplit(".", 1)[-1]}
        for fragment in (fragment for fragment in fragments if len(fragment) >= 8):
            assert fragment not in response.text
            assert all(fragment not in value for value in response.headers.values())
    return body


def assert_invalid_token(response: httpx2.Response, *secrets: str) -> str:
    """401 with error="invalid_token"; returns the error_description."""
    body = assert_problem(response, 401, *secrets)
    assert body["type"] == "/problems/invalid-token"
    params = challenge(response)
    assert params["realm"] == "http://testserver"
    assert params["error"] == "invalid_token"
    description = params["error_description"]
    assert description
    assert description == body["detail"]
    return description


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hand_made_token(
    settings: Settings,
    *,
    key: bytes | None = None,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """An HS256 JWS with the service's claims, overridden by `claims` (None drops one)."""
    secret = settings.secret_key if key is None else key
    now = int(time.time())
    payload = {
        "iss": settings.TOKEN_ISSUER,
        "aud": settings.TOKEN_AUDIENCE,
        "sub": "1",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "sid": str(uuid.uuid4()),
        "email": "ada@example.com",
    } | claims
    payload = {name: value for name, value in payload.items() if value is not None}
    jose = {"alg": "HS256", "typ": "at+jwt", "kid": hmac_kid(settings.secret_key)} | (header or {})
    signing_input = f"{b64url(json.dumps(jose).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


# The happy path, for contrast


def test_a_valid_access_token_opens_the_test_endpoint(
    client: TestClient, access_token: str
) -> None:
    response = client.get("/test", headers=bearer(access_token))

    assert response.status_code == 200
    assert response.json() == GREETING


def test_a_hand_made_token_with_the_service_secret_opens_the_test_endpoint(
    client: TestClient, settings: Settings
) -> None:
    # The reference for every hand-made bad token below: each changes one thing of it.
    response = client.get("/test", headers=bearer(hand_made_token(settings)))

    assert response.status_code == 200


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_the_bearer_scheme_name_is_case_insensitive(
    client: TestClient, access_token: str, scheme: str
) -> None:
    response = client.get("/test", headers={"Authorization": f"{scheme} {access_token}"})

    assert response.status_code == 200
    assert response.json() == GREETING


@pytest.mark.parametrize("spaces", [2, 5], ids=["two-spaces", "five-spaces"])
def test_several_spaces_between_bearer_and_the_token_are_allowed(
    client: TestClient, access_token: str, spaces: int
) -> None:
    response = client.get(
        "/test", headers={"Authorization": "Bearer" + " " * spaces + access_token}
    )

    assert response.status_code == 200


# No credentials: a bare challenge (RFC 6750 §3.1)


def test_a_request_without_authorization_gets_a_bare_bearer_challenge(
    client: TestClient,
) -> None:
    response = client.get("/test")

    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE
    assert "error" not in challenge(response)
    assert body["type"] == "/problems/authentication-required"


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic {token}",
        "Token {token}",
        "Digest {token}",
        "Bearer{token}",
        "JWT {token}",
    ],
    ids=["basic", "token", "digest", "bearer-glued-to-token", "jwt"],
)
def test_another_scheme_gets_a_bare_bearer_challenge(
    client: TestClient, access_token: str, authorization: str
) -> None:
    response = client.get(
        "/test", headers={"Authorization": authorization.format(token=access_token)}
    )

    assert_problem(response, 401, access_token)
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE


def test_a_basic_authorization_gets_a_bare_bearer_challenge(client: TestClient) -> None:
    credentials = base64.b64encode(b"ada@example.com:a long enough test passphrase").decode()

    response = client.get("/test", headers={"Authorization": f"Basic {credentials}"})

    assert_problem(response, 401, credentials)
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE


def test_a_token_only_in_the_query_string_is_never_read(
    client: TestClient, access_token: str
) -> None:
    # RFC 9700 §4.3.2: even a valid token is ignored there, so this is "no credentials".
    response = client.get("/test", params={"access_token": access_token})

    assert_problem(response, 401, access_token)
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE


# Bearer with no token


@pytest.mark.parametrize(
    "authorization", ["Bearer", "Bearer ", "Bearer    "], ids=["bare", "one-space", "spaces"]
)
def test_bearer_without_a_token_is_an_invalid_token(client: TestClient, authorization: str) -> None:
    response = client.get("/test", headers={"Authorization": authorization})

    assert_invalid_token(response)


# Two ways of sending a token: invalid_request (RFC 6750 §3.1)


@pytest.mark.parametrize(
    "second",
    ["Bearer {token}", "Bearer not-a-token", "Basic dXNlcjpwYXNz", ""],
    ids=["same-token-twice", "another-token", "basic", "empty"],
)
def test_two_authorization_headers_are_an_invalid_request(
    client: TestClient, access_token: str, second: str
) -> None:
    headers = [
        ("Authorization", f"Bearer {access_token}"),
        ("Authorization", second.format(token=access_token)),
    ]

    response = client.get("/test", headers=headers)

    body = assert_problem(response, 400, access_token)
    assert response.headers["WWW-Authenticate"] == INVALID_REQUEST_CHALLENGE
    assert body["type"] == "/problems/invalid-request"


@pytest.mark.parametrize(
    "query",
    ["{token}", "something-else", ""],
    ids=["same-token", "other-value", "empty-value"],
)
def test_a_header_and_a_query_string_token_together_are_an_invalid_request(
    client: TestClient, access_token: str, query: str
) -> None:
    response = client.get(
        "/test",
        params={"access_token": query.format(token=access_token)},
        headers=bearer(access_token),
    )

    assert_problem(response, 400, access_token)
    assert response.headers["WWW-Authenticate"] == INVALID_REQUEST_CHALLENGE


# A token that fails a check: invalid_token with a description that does not echo it


def test_an_expired_token_is_refused_with_a_description_saying_so(
    client: TestClient, app: FastAPI, db: Session
) -> None:
    user = make_user(db)
    runtime: Runtime = app.state.runtime
    now = runtime.now()
    token = runtime.issuer.codec.mint(
        user_id=user.id,
        email=user.email,
        phone=None,
        session_id=uuid.uuid4(),
        issued_at=now - timedelta(minutes=20),
        expires_at=now - timedelta(seconds=1),
    )

    response = client.get("/test", headers=bearer(token))

    description = assert_invalid_token(response, token)
    assert "expired" in description.lower()


def test_a_token_signed_with_another_secret_is_refused_as_a_bad_signature(
    client: TestClient, settings: Settings
) -> None:
    token = hand_made_token(settings, key=b"another secret that is at least 32 bytes long")

    response = client.get("/test", headers=bearer(token))

    assert assert_invalid_token(response, token) == "bad signature"


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({"aud": "another-api"}, "audience"),
        ({"iss": "http://evil.example"}, "issuer"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"exp": int(time.time()) - 1}, "expired"),
        ({"header": {"alg": "HS512"}}, "algorithm"),
        ({"header": {"typ": "JWT"}}, "type"),
        ({"header": {"kid": "unknown"}}, "key"),
        ({"jti": None}, "jti"),
    ],
    ids=[
        "wrong-audience",
        "wrong-issuer",
        "not-yet-valid",
        "expired",
        "other-algorithm",
        "wrong-typ",
        "unknown-kid",
        "missing-jti",
    ],
)
def test_each_failed_check_is_named_in_the_error_description(
    client: TestClient, settings: Settings, overrides: dict[str, Any], kind: str
) -> None:
    token = hand_made_token(settings, **overrides)

    response = client.get("/test", headers=bearer(token))

    assert kind in assert_invalid_token(response, token).lower()


def test_an_alg_none_token_is_refused(client: TestClient, settings: Settings) -> None:
    signed = hand_made_token(settings, header={"alg": "none"})
    token = signed.rsplit(".", 1)[0] + "."

    response = client.get("/test", headers=bearer(token))

    assert "algorithm" in assert_invalid_token(response, token).lower()


def test_a_refresh_token_is_not_accepted_as_an_access_token(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    refresh_token = login(client)["refresh_token"]

    response = client.get("/test", headers=bearer(refresh_token))

    assert_invalid_token(response, refresh_token)


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "..", "Bearer", "x" * 100],
    ids=["opaque-word", "three-junk-segments", "empty-segments", "scheme-as-token", "long-junk"],
)
def test_a_malformed_token_is_an_invalid_token(client: TestClient, token: str) -> None:
    response = client.get("/test", headers=bearer(token))

    assert_invalid_token(response, token)


def oversized_token(settings: Settings, length: int) -> str:
    """A correctly signed token of `length` characters or a few more, padded by an extra claim."""
    pad = ""
    while len(token := hand_made_token(settings, pad=pad)) < length:
        # base64url: 4 characters for 3 bytes of JSON.
        pad += "x" * max(1, (length - len(token)) * 3 // 4)
    return token


def test_a_token_over_8_kib_is_refused_as_too_large(client: TestClient, settings: Settings) -> None:
    token = oversized_token(settings, 8 * 1024 + 1)
    assert 8 * 1024 < len(token) < 8 * 1024 + 8

    response = client.get("/test", headers=bearer(token))

    assert response.status_code == 401  # never 431 nor 500
    assert "too large" in assert_invalid_token(response, token)


def test_a_much_larger_token_is_refused_without_a_server_error(
    client: TestClient, settings: Settings
) -> None:
    token = oversized_token(settings, 64 * 1024)

    response = client.get("/test", headers=bearer(token))

    assert_invalid_token(response, token)
