"""Asymmetric signing through the API: GET /.well-known/jwks.json, and switching keys.

A switch (HS256 to RS256) or a rotation (one key pair to the next) logs no one out: the
tokens already issued verify against the previous key until they expire.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.security.keys import hmac_kid
from tests.factories import bearer, login, make_user
from tests.keyfiles import ASYMMETRIC, private_key_file, public_key_file

GREETING = "Only authenticated user can consume this endpoint"


@contextmanager
def serving(settings_env: dict[str, str], **overrides: str) -> Iterator[TestClient]:
    """The app built from the test settings with `overrides`, as one start of the service."""
    settings = Settings(**{**settings_env, **overrides})  # type: ignore[arg-type]
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client


def header_of(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)


def key_set(client: TestClient) -> list[dict[str, str]]:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys: list[dict[str, str]] = response.json()["keys"]
    return keys


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_the_key_set_publishes_the_public_key_that_verifies_the_access_tokens(
    settings_env: dict[str, str], db: Session, tmp_path: Path, algorithm: str
) -> None:
    make_user(db)
    key_file = private_key_file(tmp_path, algorithm)

    with serving(
        settings_env, TOKEN_ALGORITHM=algorithm, TOKEN_PRIVATE_KEY_FILE=str(key_file)
    ) as client:
        token = login(client)["access_token"]
        response = client.get("/.well-known/jwks.json")
        greeting = client.get("/test", headers=bearer(token))

    assert response.status_code == 200
    assert "max-age=" in response.headers["Cache-Control"]
    (jwk,) = response.json()["keys"]
    assert jwk["kid"] == header_of(token)["kid"]
    assert jwk["alg"] == header_of(token)["alg"] == algorithm
    assert jwk["use"] == "sig"
    assert "d" not in jwk
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[algorithm],
        audience="API",
        issuer="http://testserver",
    )
    assert claims["email"] == "ada@example.com"
    assert greeting.status_code == 200
    assert greeting.json() == GREETING


def test_the_key_set_lists_the_current_key_first_then_the_previous_public_keys_only(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    old_secret = settings_env["TOKEN_SECRET_KEY"]

    with serving(
        settings_env,
        TOKEN_ALGORITHM="ES256",
        TOKEN_PRIVATE_KEY_FILE=str(private_key_file(tmp_path, "ES256")),
        TOKEN_PREVIOUS_PUBLIC_KEY_FILES=(
            f"{public_key_file(tmp_path, 'RS256')},{public_key_file(tmp_path, 'EdDSA')}"
        ),
        TOKEN_PREVIOUS_SECRET_KEYS=old_secret,
    ) as client:
        keys = key_set(client)

    assert [(key["kty"], key["alg"]) for key in keys] == [
        ("EC", "ES256"),
        ("RSA", "RS256"),
        ("OKP", "EdDSA"),
    ]
    assert all(key["kid"] != hmac_kid(old_secret.encode()) for key in keys)
    assert all(key["kty"] != "oct" for key in keys)


def test_the_key_set_stays_empty_with_hs256_and_a_previous_secret(
    settings_env: dict[str, str],
) -> None:
    previous = "a previous secret that is longer than thirty-two bytes"

    with serving(settings_env, TOKEN_PREVIOUS_SECRET_KEYS=previous) as client:
        response = client.get("/.well-known/jwks.json")

    assert response.json() == {"keys": []}
    assert previous not in response.text


def test_switching_from_hs256_to_rs256_keeps_the_issued_tokens_valid(
    settings_env: dict[str, str], db: Session, tmp_path: Path
) -> None:
    make_user(db)
    with serving(settings_env) as before:
        old_pair = login(before)
    rs256 = {
        "TOKEN_ALGORITHM": "RS256",
        "TOKEN_PRIVATE_KEY_FILE": str(private_key_file(tmp_path, "RS256")),
    }

    # The old secret moves to TOKEN_PREVIOUS_SECRET_KEYS for one access-token lifetime.
    with serving(
        settings_env, **rs256, TOKEN_PREVIOUS_SECRET_KEYS=settings_env["TOKEN_SECRET_KEY"]
    ) as after:
        old_token = after.get("/test", headers=bearer(old_pair["access_token"]))
        refreshed = after.post(
            "/account/refresh", json={"refresh_token": old_pair["refresh_token"]}
        )
        new_token = refreshed.json()["access_token"]
        new = after.get("/test", headers=bearer(new_token))
        published = key_set(after)

    assert header_of(old_pair["access_token"])["alg"] == "HS256"
    assert old_token.status_code == 200
    assert refreshed.status_code == 200
    assert header_of(new_token)["alg"] == "RS256"
    assert new.status_code == 200
    assert [key["kid"] for key in published] == [header_of(new_token)["kid"]]


def test_a_token_of_a_key_that_is_no_longer_kept_is_refused(
    settings_env: dict[str, str], db: Session, tmp_path: Path
) -> None:
    make_user(db)
    with serving(settings_env) as before:
        old_token = login(before)["access_token"]

    with serving(
        settings_env,
        TOKEN_ALGORITHM="RS256",
        TOKEN_PRIVATE_KEY_FILE=str(private_key_file(tmp_path, "RS256")),
    ) as after:
        response = after.get("/test", headers=bearer(old_token))

    assert response.status_code == 401
    assert 'error_description="unknown or missing key id"' in response.headers["WWW-Authenticate"]


def test_rotating_to_a_new_key_pair_keeps_the_old_tokens_valid(
    settings_env: dict[str, str], db: Session, tmp_path: Path
) -> None:
    make_user(db)
    old_key = {
        "TOKEN_ALGORITHM": "EdDSA",
        "TOKEN_PRIVATE_KEY_FILE": str(private_key_file(tmp_path, "EdDSA")),
    }
    with serving(settings_env, **old_key) as before:
        old_token = login(before)["access_token"]

    with serving(
        settings_env,
        TOKEN_ALGORITHM="EdDSA",
        TOKEN_PRIVATE_KEY_FILE=str(private_key_file(tmp_path, "EdDSA", copy=1)),
        TOKEN_PREVIOUS_PUBLIC_KEY_FILES=str(public_key_file(tmp_path, "EdDSA")),
    ) as after:
        old = after.get("/test", headers=bearer(old_token))
        new_token = login(after)["access_token"]
        published = [key["kid"] for key in key_set(after)]

    assert old.status_code == 200
    assert header_of(new_token)["kid"] != header_of(old_token)["kid"]
    assert published == [header_of(new_token)["kid"], header_of(old_token)["kid"]]
