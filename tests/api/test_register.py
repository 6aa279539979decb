"""POST /account/register and GET /account/me."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.models import User
from tests.factories import bearer, login, make_user

PROBLEM_JSON = "application/problem+json"
PASSWORD = "correct horse battery staple"
PROFILE_FIELDS = {
    "id",
    "email",
    "email_verified",
    "first_name",
    "last_name",
    "phone_number",
    "created_at",
    "two_factor_enabled",
}
# RFC 3339 in UTC with whole seconds: 2026-11-28T02:00:00Z.
RFC3339_UTC_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
# In the shipped list of common passwords, and long enough for the default minimum of 15.
COMMON_PASSWORD = "1q2w3e4r5t6y7u8i9o0p"


def registration(**fields: Any) -> dict[str, Any]:
    return {"email": "ada@example.com", "password": PASSWORD, **fields}


@contextmanager
def client_with(settings_env: dict[str, str], **overrides: str) -> Iterator[TestClient]:
    app = create_app(Settings(**{**settings_env, **overrides}))  # type: ignore[arg-type]
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def users_in(db: Session) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(User)) or 0


def assert_validation_problem(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 422
    assert body["type"] == "/problems/validation-error"
    assert body["errors"]
    for error in body["errors"]:
        assert set(error) == {"loc", "msg"}
    assert any(field in error["loc"] for error in body["errors"]), body["errors"]


def test_registration_answers_201_with_the_profile_and_its_location(
    client: TestClient, db: Session
) -> None:
    response = client.post(
        "/account/register",
        json=registration(
            email="  Ada@Example.COM ",
            first_name="Ada",
            last_name="Lovelace",
            phone_number="+447700900123",
        ),
    )

    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/account/me"
    body = response.json()
    assert set(body) == PROFILE_FIELDS
    assert isinstance(body["id"], int)
    assert not isinstance(body["id"], bool)
    assert body["email"] == "ada@example.com"
    assert body["first_name"] == "Ada"
    assert body["last_name"] == "Lovelace"
    assert body["phone_number"] == "+447700900123"
    assert RFC3339_UTC_SECONDS.fullmatch(body["created_at"]), body["created_at"]
    assert PASSWORD not in response.text
    assert "argon2" not in response.text


def test_optional_profile_fields_may_be_left_out(client: TestClient) -> None:
    response = client.post("/account/register", json=registration())

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["first_name"] is None
    assert body["last_name"] is None
    assert body["phone_number"] is None


def test_the_registered_profile_is_what_account_me_answers(client: TestClient) -> None:
    registered = client.post(
        "/account/register",
        json=registration(first_name="Ada", last_name="Lovelace", phone_number="+447700900123"),
    )
    assert registered.status_code == 201, registered.text
    pair = login(client, "ada@example.com", PASSWORD)

    response = client.get("/account/me", headers=bearer(pair["access_token"]))

    assert response.status_code == 200
    assert response.json() == registered.json()


def test_the_stored_password_hash_is_argon2id(client: TestClient, db: Session) -> None:
    response = client.post("/account/register", json=registration())
    assert response.status_code == 201

    user = db.scalars(select(User).where(User.email == "ada@example.com")).one()

    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


@pytest.mark.parametrize(
    "email",
    [
        pytest.param("ada@example.com", id="same"),
        pytest.param("ADA@EXAMPLE.COM", id="upper-case"),
        pytest.param("Ada@example.com", id="capitalised"),
        pytest.param(" ada@example.com ", id="surrounding-spaces"),
        pytest.param("\uff41\uff44\uff41@example.com", id="full-width-nfkc"),
        pytest.param(
            "\uff21\uff24\uff21@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", id="nfkc"
        ),
    ],
)
def test_an_email_equal_to_a_registered_one_in_canonical_form_is_409(
    client: TestClient, db: Session, email: str
) -> None:
    make_user(db, email="ada@example.com")

    response = client.post("/account/register", json=registration(email=email))

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 409
    assert users_in(db) == 1


def test_a_password_of_exactly_the_minimum_length_is_accepted(client: TestClient) -> None:
    response = client.post("/account/register", json=registration(password="fifteen chars!!"))

    assert response.status_code == 201, response.text


def test_a_password_of_exactly_256_characters_is_accepted(client: TestClient) -> None:
    password = "pass phrase " * 21 + "abcd"
    assert len(password) == 256

    response = client.post("/account/register", json=registration(password=password))

    assert response.status_code == 201, response.text


def test_names_of_exactly_300_characters_are_accepted(client: TestClient) -> None:
    response = client.post(
        "/account/register", json=registration(first_name="A" * 300, last_name="L" * 300)
    )

    assert response.status_code == 201, response.text
    assert response.json()["first_name"] == "A" * 300


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"password": "fourteen chars"}, "password", id="password-under-15"),
        pytest.param(
            {"password": "e\u0301" * 10}, "password", id="password-20-code-points-10-after-nfkc"
        ),
        pytest.param({"password": COMMON_PASSWORD}, "password", id="common-password"),
        pytest.param(
            {"password": COMMON_PASSWORD.upper()}, "password", id="common-password-upper-case"
        ),
        pytest.param({"password": "x" * 257}, "password", id="password-over-256"),
        pytest.param({"phone_number": "447700900123"}, "phone_number", id="phone-without-plus"),
        pytest.param({"phone_number": "+1234567"}, "phone_number", id="phone-7-digits"),
        pytest.param({"phone_number": "+1234567890123456"}, "phone_number", id="phone-16-digits"),
        pytest.param({"phone_number": "+44 7700 900123"}, "phone_number", id="phone-spaces"),
        pytest.param({"phone_number": "+44-7700-900123"}, "phone_number", id="phone-dashes"),
        pytest.param({"phone_number": "+44770090012a"}, "phone_number", id="phone-letter"),
        pytest.param({"phone_number": "+447700900123\n"}, "phone_number", id="phone-newline"),
        pytest.param({"phone_number": 447700900123}, "phone_number", id="phone-number-type"),
        pytest.param({"first_name": "A" * 301}, "first_name", id="first-name-over-300"),
        pytest.param({"last_name": "L" * 301}, "last_name", id="last-name-over-300"),
        pytest.param({"email": "not-an-email"}, "email", id="email-not-an-email"),
        pytest.param({"email": "a" * 300 + "@example.com"}, "email", id="email-too-long"),
        pytest.param({"first_name": "Ada\x00"}, "first_name", id="nul-in-first-name"),
        pytest.param({"last_name": "Love\x00lace"}, "last_name", id="nul-in-last-name"),
        pytest.param({"email": "ada\x00@example.com"}, "email", id="nul-in-email"),
        pytest.param({"password": PASSWORD + "\x00"}, "password", id="nul-in-password"),
    ],
)
def test_a_weak_or_malformed_registration_is_422_and_creates_no_account(
    client: TestClient, db: Session, fields: dict[str, Any], field: str
) -> None:
    response = client.post("/account/register", json=registration(**fields))

    assert_validation_problem(response, field)
    assert users_in(db) == 0


@pytest.mark.parametrize(
    ("content", "field"),
    [
        pytest.param(
            b'{"email": "ada@example.com", "password": "a long passphrase \\ud800 here"}',
            "password",
            id="surrogate-in-password",
        ),
        pytest.param(
            b'{"email": "ada@example.com", "password": "correct horse battery staple",'
            b' "first_name": "\\udc00"}',
            "first_name",
            id="surrogate-in-first-name",
        ),
        pytest.param(
            b'{"email": "ada\\ud800@example.com", "password": "correct horse battery staple"}',
            "email",
            id="surrogate-in-email",
        ),
    ],
)
def test_lone_surrogates_in_a_registration_are_422_never_500(
    client: TestClient, db: Session, content: bytes, field: str
) -> None:
    response = client.post(
        "/account/register", content=content, headers={"Content-Type": "application/json"}
    )

    assert_validation_problem(response, field)
    assert users_in(db) == 0


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b'{"email": "ada@example.com"}', "application/json", id="no-password"),
        pytest.param(
            b'{"password": "' + PASSWORD.encode() + b'"}', "application/json", id="no-email"
        ),
        pytest.param(
            b'{"email": "ada@example.com", "password": "', "application/json", id="bad-json"
        ),
        pytest.param(b"", "application/json", id="empty-body"),
    ],
)
def test_a_malformed_registration_body_is_422_without_the_password(
    client: TestClient, content: bytes, content_type: str
) -> None:
    response = client.post(
        "/account/register", content=content, headers={"Content-Type": content_type}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert PASSWORD not in response.text


def test_a_weak_password_422_does_not_echo_the_password(client: TestClient) -> None:
    response = client.post("/account/register", json=registration(password=COMMON_PASSWORD))

    assert response.status_code == 422
    assert COMMON_PASSWORD not in response.text


def test_a_lower_minimum_length_still_refuses_common_passwords(
    settings_env: dict[str, str], db: Session
) -> None:
    with client_with(settings_env, PASSWORD_MIN_LENGTH="8") as client:
        common = client.post("/account/register", json=registration(password="password123"))
        uncommon = client.post("/account/register", json=registration(password="vq8#tLm2"))

    assert_validation_problem(common, "password")
    assert uncommon.status_code == 201, uncommon.text


def test_registration_is_a_404_problem_when_disabled(
    settings_env: dict[str, str], db: Session
) -> None:
    with client_with(settings_env, REGISTRATION_ENABLED="false") as client:
        response = client.post("/account/register", json=registration())

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 404
    assert users_in(db) == 0
