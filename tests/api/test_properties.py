"""Property tests: whatever a client sends, the answer is the one API.md and the OpenAPI
document give it, and never a 500.

Hypothesis drives the in-process TestClient (fast), derandomized so CI sees the same
examples on every run, with a bounded number of examples per property."""

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from tests.factories import bearer, login, make_user

REALM = 'Bearer realm="http://testserver"'
TOKEN_REASONS = {
    "missing token",
    "malformed token",
    "token too large",
    "unknown or missing key id",
    "algorithm not allowed",
    "wrong token type",
    "bad signature",
}


def fuzz(max_examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Bounded, reproducible Hypothesis settings. The fixtures (one app, one user) are
    shared by every example of a test, which is what the health check warns about."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def contains_unstorable(text: str) -> bool:
    """NUL or a lone surrogate: text the contract answers with 422."""
    return "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text)


def assert_problem(response: Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


# RFC 9110 §5.5: a field value is visible ASCII, obs-text (0x80-0xFF), spaces and tabs.
FIELD_CHARACTERS = st.one_of(
    st.sampled_from(" \t"),
    st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    st.characters(min_codepoint=0x80, max_codepoint=0xFF),
)
# Up to and past the 8 KiB token limit.
HEADER_SAFE_TEXT = st.text(FIELD_CHARACTERS, max_size=8 * 1024 + 64)


@fuzz(max_examples=150)
@given(token=HEADER_SAFE_TEXT)
def test_any_header_safe_string_as_a_bearer_token_is_a_401_invalid_token(
    client: TestClient, token: str
) -> None:
    # API.md "401 on protected routes": a bearer token that fails any check.
    response = client.get(
        "/account/me", headers={b"Authorization": b"Bearer " + token.encode("latin-1")}
    )

    body = assert_problem(response, 401)
    assert body["type"] == "/problems/invalid-token"
    assert body["detail"] in TOKEN_REASONS
    assert response.headers["WWW-Authenticate"] == (
        f'{REALM}, error="invalid_token", error_description="{body["detail"]}"'
    )


@fuzz(max_examples=100)
@given(value=HEADER_SAFE_TEXT)
def test_any_header_safe_authorization_value_is_a_401(client: TestClient, value: str) -> None:
    # No Bearer scheme: a bare challenge; a Bearer scheme: invalid_token (RFC 6750 §3).
    response = client.post(
        "/account/logout-all", headers={b"Authorization": value.encode("latin-1")}
    )

    body = assert_problem(response, 401)
    challenge = response.headers["WWW-Authenticate"]
    if body["type"] == "/problems/authentication-required":
        assert challenge == REALM
    else:
        assert challenge.startswith(f'{REALM}, error="invalid_token", error_description="')


@fuzz(max_examples=150)
@given(token=st.text())
def test_any_string_as_a_refresh_token_is_a_401_or_a_422(client: TestClient, token: str) -> None:
    response = client.post(
        "/account/refresh",
        content=json.dumps({"refresh_token": token}),
        headers={"Content-Type": "application/json"},
    )

    if contains_unstorable(token):
        assert_problem(response, 422)
    else:
        body = assert_problem(response, 401)
        assert body["detail"] == "unknown refresh token"
        assert response.headers["WWW-Authenticate"].startswith(f'{REALM}, error="invalid_token"')


@fuzz(max_examples=100)
@given(token=st.text())
def test_any_string_at_logout_is_a_204_or_a_422(client: TestClient, token: str) -> None:
    # RFC 7009 §2.2: an unknown token is no error.
    response = client.post(
        "/account/logout",
        content=json.dumps({"refresh_token": token}),
        headers={"Content-Type": "application/json"},
    )

    if contains_unstorable(token):
        assert_problem(response, 422)
    else:
        assert response.status_code == 204, response.text


@fuzz(max_examples=100)
@given(token=st.text())
def test_any_string_as_a_refresh_grant_is_an_rfc_6749_400(client: TestClient, token: str) -> None:
    form = "grant_type=refresh_token&refresh_token=" + quote(
        token.encode("utf-8", "surrogatepass"), safe=""
    )

    response = client.post(
        "/account/token",
        content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"] in {"invalid_grant", "invalid_request"}


# Any JSON body to every operation that takes one: a status its OpenAPI entry documents.

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=10,
)
FIELD_VALUES = st.one_of(
    JSON_VALUES,
    st.emails().map(str),
    st.text(min_size=15, max_size=80),
    st.from_regex(r"\+[0-9]{8,15}", fullmatch=True),
)
FIELDS = [
    "email",
    "password",
    "refresh_token",
    "first_name",
    "last_name",
    "phone_number",
    "current_password",
    "new_password",
    "grant_type",
]
# Mostly objects with the fields the endpoints know, so validation is exercised deeply.
BODIES = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({}, optional={field: FIELD_VALUES for field in FIELDS}),
)
OPERATIONS = [
    "/account/login",
    "/account/register",
    "/account/refresh",
    "/account/logout",
    "/account/password",
    "/account/token",
]


@pytest.fixture
def documented(client: TestClient) -> dict[str, set[int]]:
    """Each operation's documented statuses, from the live OpenAPI document."""
    paths = client.get("/openapi.json").json()["paths"]
    return {
        path: {int(status) for status in paths[path]["post"]["responses"]} for path in OPERATIONS
    }


@pytest.mark.parametrize("path", OPERATIONS)
@fuzz(max_examples=60)
@given(body=BODIES)
def test_any_json_body_gets_a_status_the_openapi_document_lists(
    client: TestClient,
    db: Session,
    documented: dict[str, set[int]],
    path: str,
    body: object,
) -> None:
    if not client.headers.get("Authorization"):
        make_user(db)
        client.headers.update(bearer(login(client)["access_token"]))

    response = client.post(
        path,
        content=json.dumps(body, ensure_ascii=True),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code in documented[path], (response.status_code, response.text)
    if response.status_code >= 400 and path != "/account/token":
        assert response.headers["content-type"] == "application/problem+json"
