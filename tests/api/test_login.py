"""POST /account/login and the OAuth 2.0 token endpoint POST /account/token (password grant)."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.orm import Session

from app.models import User
from tests.factories import DEFAULT_PASSWORD, make_user

PROBLEM_JSON = "application/problem+json"
INVALID_CREDENTIALS = {
    "type": "/problems/invalid-credentials",
    "title": "Invalid credentials",
    "status": 400,
    "detail": "invalid credentials",
}
# A password that must never come back in an error body.
SECRET = "never-echo-this-passphrase-42"
LIMIT = 64 * 1024


def assert_no_store(headers: Any) -> None:
    # RFC 6749 §5.1: a response that carries tokens is never cached.
    assert headers["Cache-Control"] == "no-store"
    assert headers["Pragma"] == "no-cache"


def assert_token_pair(body: dict[str, Any]) -> None:
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
    }
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1200
    assert isinstance(body["access_token"], str)
    assert body["access_token"].count(".") == 2
    assert isinstance(body["refresh_token"], str)
    assert len(body["refresh_token"]) >= 43  # 256 bits in base64url
    assert isinstance(body["refresh_expires_in"], int)
    assert body["refresh_expires_in"] > 0


def assert_validation_problem(response: Any) -> None:
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == "/problems/validation-error"
    assert body["status"] == 422
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    assert body["errors"], "a 422 names at least one error"
    for error in body["errors"]:
        assert set(error) == {"loc", "msg"}
        assert isinstance(error["loc"], list)
        assert isinstance(error["msg"], str)


class VerificationCounter:
    """Counts calls to the pwdlib object under the service's hasher, passing them through."""

    def __init__(self, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        underlying: PasswordHash = app.state.runtime.hasher._hash
        for name in ("verify", "verify_and_update"):
            monkeypatch.setattr(underlying, name, self._counting(name, getattr(underlying, name)))

    def _counting(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return original(*args, **kwargs)

        return wrapper


@pytest.fixture
def verifications(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> VerificationCounter:
    return VerificationCounter(app, monkeypatch)


# --- POST /account/login ------------------------------------------------------------------------


def test_login_answers_a_token_pair_that_is_never_cached(client: TestClient, db: Session) -> None:
    make_user(db)

    response = client.post(
        "/account/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert_token_pair(response.json())
    assert_no_store(response.headers)


def test_wrong_password_and_unknown_email_get_the_same_400(client: TestClient, db: Session) -> None:
    make_user(db)

    wrong_password = client.post(
        "/account/login", json={"email": "ada@example.com", "password": "not the password at all"}
    )
    unknown_email = client.post(
        "/account/login", json={"email": "nobody@example.com", "password": DEFAULT_PASSWORD}
    )

    assert wrong_password.status_code == unknown_email.status_code == 400
    assert wrong_password.headers["content-type"] == PROBLEM_JSON
    assert unknown_email.headers["content-type"] == PROBLEM_JSON
    assert wrong_password.content == unknown_email.content
    assert wrong_password.json() == INVALID_CREDENTIALS


@pytest.mark.parametrize(
    ("email", "password"),
    [
        pytest.param("ada@example.com", "not the password at all", id="wrong-password"),
        pytest.param("nobody@example.com", DEFAULT_PASSWORD, id="unknown-email"),
        pytest.param("ada@example.com", DEFAULT_PASSWORD, id="right-password"),
    ],
)
def test_every_login_runs_exactly_one_password_verification(
    client: TestClient,
    db: Session,
    verifications: VerificationCounter,
    email: str,
    password: str,
) -> None:
    make_user(db)

    client.post("/account/login", json={"email": email, "password": password})

    # An unknown email verifies against a dummy hash: the same work, so the same timing.
    assert len(verifications.calls) == 1


@pytest.mark.parametrize(
    "email",
    [
        pytest.param("ADA@EXAMPLE.COM", id="upper-case"),
        pytest.param("Ada@Example.Com", id="mixed-case"),
        pytest.param("  ada@example.com  ", id="surrounding-spaces"),
        pytest.param(
            "\uff41\uff44\uff41@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", id="nfkc"
        ),
        pytest.param(" \uff21\uff24\uff21@EXAMPLE.COM ", id="nfkc-upper-case-spaces"),
    ],
)
def test_login_accepts_any_form_of_the_email_that_canonicalises_to_the_account(
    client: TestClient, db: Session, email: str
) -> None:
    make_user(db)

    response = client.post("/account/login", json={"email": email, "password": DEFAULT_PASSWORD})

    assert response.status_code == 200, response.text
    assert_token_pair(response.json())


@pytest.mark.parametrize(
    "email",
    [
        pytest.param("ada", id="no-at-sign"),
        pytest.param("ada@", id="no-domain"),
        pytest.param("@example.com", id="no-local-part"),
        pytest.param("ada@@example.com", id="two-at-signs"),
        pytest.param("", id="empty"),
    ],
)
def test_login_with_a_value_that_is_not_an_email_is_422(
    client: TestClient, db: Session, email: str
) -> None:
    make_user(db)

    response = client.post("/account/login", json={"email": email, "password": SECRET})

    assert_validation_problem(response)
    assert SECRET not in response.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(
            b'{"password": "' + SECRET.encode() + b'"}', "application/json", id="no-email"
        ),
        pytest.param(b'{"email": "ada@example.com"}', "application/json", id="no-password"),
        pytest.param(
            b'{"email": "ada@example.com", "password": ["' + SECRET.encode() + b'"]}',
            "application/json",
            id="password-is-a-list",
        ),
        pytest.param(
            b'{"email": "ada@example.com", "password": 1234567890123456}',
            "application/json",
            id="password-is-a-number",
        ),
        pytest.param(
            b'{"email": 42, "password": "' + SECRET.encode() + b'"}',
            "application/json",
            id="email-is-a-number",
        ),
        pytest.param(
            b'["ada@example.com", "' + SECRET.encode() + b'"]', "application/json", id="array-body"
        ),
        pytest.param(
            b'{"email": "ada@example.com", "password": "' + SECRET.encode() + b'"',
            "application/json",
            id="truncated-json",
        ),
        pytest.param(b"", "application/json", id="empty-body"),
        pytest.param(b"null", "application/json", id="null-body"),
    ],
)
def test_a_malformed_login_body_is_a_422_problem_that_never_echoes_the_password(
    client: TestClient, db: Session, content: bytes, content_type: str
) -> None:
    make_user(db)

    response = client.post(
        "/account/login", content=content, headers={"Content-Type": content_type}
    )

    assert_validation_problem(response)
    assert SECRET not in response.text


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"email": "ada\\u0000@example.com", "password": "x"}', id="nul-in-email"),
        pytest.param(b'{"email": "ada@example.com\\u0000", "password": "x"}', id="nul-after-email"),
        pytest.param(b'{"email": "ada\\ud800@example.com", "password": "x"}', id="surrogate-email"),
        pytest.param(
            b'{"email": "ada@example.com", "password": "pass\\u0000word"}', id="nul-in-password"
        ),
        pytest.param(b'{"email": "ada@example.com", "password": "\\ud800"}', id="lone-surrogate"),
        pytest.param(
            b'{"email": "ada@example.com", "password": "\\udfff\\ud800"}', id="reversed-pair"
        ),
    ],
)
def test_nul_bytes_and_lone_surrogates_in_login_are_422_never_500(
    client: TestClient, db: Session, content: bytes
) -> None:
    make_user(db)

    response = client.post(
        "/account/login", content=content, headers={"Content-Type": "application/json"}
    )

    assert_validation_problem(response)


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("a", id="one-character"),
        pytest.param("short", id="under-the-minimum-length"),
        pytest.param("x" * 257, id="over-the-registration-maximum"),
        pytest.param("y" * 60_000, id="sixty-thousand-characters"),
    ],
)
def test_any_wrong_password_short_or_long_is_invalid_credentials(
    client: TestClient, db: Session, password: str
) -> None:
    make_user(db)

    response = client.post(
        "/account/login", json={"email": "ada@example.com", "password": password}
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == INVALID_CREDENTIALS


def _login_body_of_size(size: int) -> bytes:
    head = b'{"email": "ada@example.com", "password": "'
    tail = b'"}'
    return head + b"p" * (size - len(head) - len(tail)) + tail


def test_a_body_of_exactly_64_kib_is_parsed(client: TestClient, db: Session) -> None:
    make_user(db)

    response = client.post(
        "/account/login",
        content=_login_body_of_size(LIMIT),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json() == INVALID_CREDENTIALS


def test_a_body_over_64_kib_with_content_length_is_413(client: TestClient, db: Session) -> None:
    make_user(db)
    body = _login_body_of_size(LIMIT + 1)

    response = client.post(
        "/account/login", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 413
    assert response.json()["type"] == "/problems/request-too-large"


def test_a_chunked_body_over_64_kib_without_content_length_is_413(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    body = _login_body_of_size(LIMIT + 1)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = client.post(
        "/account/login",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    request_headers = response.request.headers

    assert "content-length" not in request_headers
    assert request_headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == "/problems/request-too-large"


def test_a_stored_hash_with_other_argon2_parameters_is_upgraded_after_login(
    client: TestClient, db: Session
) -> None:
    old_hasher = PasswordHash((Argon2Hasher(memory_cost=2048, time_cost=2, parallelism=1),))
    old_hash = old_hasher.hash(DEFAULT_PASSWORD)
    user = make_user(db, password_hash=old_hash)

    response = client.post(
        "/account/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )

    assert response.status_code == 200
    db.expire_all()
    stored = db.get(User, user.id)
    assert stored is not None
    assert stored.password_hash != old_hash
    # The test settings: PASSWORD_HASH_MEMORY_KIB=1024, TIME_COST=1, PARALLELISM=1.
    assert stored.password_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert old_hasher.verify(DEFAULT_PASSWORD, stored.password_hash)
    second = client.post(
        "/account/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )
    assert second.status_code == 200


def test_a_failed_login_leaves_an_outdated_hash_alone(client: TestClient, db: Session) -> None:
    old_hash = PasswordHash((Argon2Hasher(memory_cost=2048, time_cost=2, parallelism=1),)).hash(
        DEFAULT_PASSWORD
    )
    user = make_user(db, password_hash=old_hash)

    response = client.post(
        "/account/login", json={"email": "ada@example.com", "password": "not the password at all"}
    )

    assert response.status_code == 400
    db.expire_all()
    stored = db.get(User, user.id)
    assert stored is not None
    assert stored.password_hash == old_hash


# --- POST /account/token (RFC 6749 §4.3) ---------------------------------------------------------


def assert_oauth_error(response: Any, error: str) -> None:
    # RFC 6749 §5.2: status 400, application/json, {"error", "error_description"?}.
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) <= {"error", "error_description", "error_uri"}
    assert body["error"] == error
    assert isinstance(body.get("error_description", ""), str)
    assert SECRET not in response.text


def test_the_password_grant_answers_a_token_pair_that_is_never_cached(
    client: TestClient, db: Session
) -> None:
    make_user(db)

    response = client.post(
        "/account/token",
        data={
            "grant_type": "password",
            "username": "ada@example.com",
            "password": DEFAULT_PASSWORD,
        },
    )

    assert response.status_code == 200
    assert_token_pair(response.json())
    assert_no_store(response.headers)


def test_the_password_grant_accepts_the_email_in_another_case(
    client: TestClient, db: Session
) -> None:
    make_user(db)

    response = client.post(
        "/account/token",
        data={
            "grant_type": "password",
            "username": "ADA@example.com",
            "password": DEFAULT_PASSWORD,
        },
    )

    assert response.status_code == 200
    assert_token_pair(response.json())


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("ada@example.com", SECRET, id="wrong-password"),
        pytest.param("nobody@example.com", DEFAULT_PASSWORD, id="unknown-email"),
    ],
)
def test_the_password_grant_with_bad_credentials_is_invalid_grant(
    client: TestClient, db: Session, username: str, password: str
) -> None:
    make_user(db)

    response = client.post(
        "/account/token",
        data={"grant_type": "password", "username": username, "password": password},
    )

    assert_oauth_error(response, "invalid_grant")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(
            b"username=ada%40example.com&password=" + SECRET.encode(),
            "application/x-www-form-urlencoded",
            id="no-grant-type",
        ),
        pytest.param(
            b"grant_type=password&password=" + SECRET.encode(),
            "application/x-www-form-urlencoded",
            id="no-username",
        ),
        pytest.param(
            b"grant_type=password&username=ada%40example.com",
            "application/x-www-form-urlencoded",
            id="no-password",
        ),
        pytest.param(b"grant_type=refresh_token", "application/x-www-form-urlencoded", id="no-rt"),
        pytest.param(b"", "application/x-www-form-urlencoded", id="empty-form"),
        pytest.param(
            b'--nope\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\npass',
            "multipart/form-data",
            id="multipart-without-boundary",
        ),
        pytest.param(
            b'{"grant_type": "password", "username": "ada@example.com", "password": "'
            + SECRET.encode()
            + b'"}',
            "application/json",
            id="json-instead-of-form",
        ),
    ],
)
def test_a_malformed_token_request_is_invalid_request(
    client: TestClient, db: Session, content: bytes, content_type: str
) -> None:
    make_user(db)

    response = client.post(
        "/account/token", content=content, headers={"Content-Type": content_type}
    )

    assert_oauth_error(response, "invalid_request")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"grant_type=password&username=ada%40example.com&password=a%00b", id="nul"),
        pytest.param(
            b"grant_type=password&username=ada%00%40example.com&password=x", id="nul-user"
        ),
        pytest.param(
            b"grant_type=password&username=ada%40example.com&password=%ED%A0%80", id="surrogate"
        ),
        pytest.param(b"grant_type=password&username=ada%40example.com&password=%FF", id="not-utf8"),
    ],
)
def test_text_that_cannot_be_a_credential_is_a_token_endpoint_400_never_500(
    client: TestClient, db: Session, content: bytes
) -> None:
    make_user(db)

    response = client.post(
        "/account/token",
        content=content,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] in {"invalid_request", "invalid_grant"}


@pytest.mark.parametrize(
    "grant_type",
    [
        pytest.param("client_credentials", id="client-credentials"),
        pytest.param("authorization_code", id="authorization-code"),
        pytest.param("PASSWORD", id="password-in-upper-case"),
    ],
)
def test_an_unknown_grant_type_is_unsupported_grant_type(
    client: TestClient, db: Session, grant_type: str
) -> None:
    make_user(db)

    response = client.post(
        "/account/token",
        data={"grant_type": grant_type, "username": "ada@example.com", "password": SECRET},
    )

    assert_oauth_error(response, "unsupported_grant_type")


def test_a_token_request_over_64_kib_is_a_413_problem(client: TestClient, db: Session) -> None:
    make_user(db)

    response = client.post(
        "/account/token",
        content=b"grant_type=password&username=ada%40example.com&password=" + b"p" * LIMIT,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON
