"""POST /account/refresh and the token endpoint's refresh_token grant: rotation, reuse, expiry."""

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.models import RefreshToken
from tests.factories import bearer, login, make_user

INVALID_TOKEN_CHALLENGE = 'Bearer realm="http://testserver", error="invalid_token"'
PAIR_FIELDS = {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}


def refresh(client: TestClient, refresh_token: str) -> httpx2.Response:
    return client.post("/account/refresh", json={"refresh_token": refresh_token})


def refreshed(client: TestClient, refresh_token: str) -> dict[str, Any]:
    response = refresh(client, refresh_token)
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


def claims_of(access_token: str) -> dict[str, Any]:
    """The access token's claims, read without checking them (the server does that)."""
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


def session_id_of(access_token: str) -> uuid.UUID:
    return uuid.UUID(claims_of(access_token)["sid"])


def freeze_clock(app: FastAPI) -> datetime:
    """Pin the app's clock to the current second, so every instant in the test is known."""
    now = datetime.now(UTC).replace(microsecond=0)
    set_clock(app, now)
    return now


def set_clock(app: FastAPI, instant: datetime) -> None:
    app.state.runtime.clock = lambda: instant


def assert_invalid_token(response: httpx2.Response, *secrets_not_echoed: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith(INVALID_TOKEN_CHALLENGE)
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "/problems/invalid-token"
    assert body["status"] == 401
    for secret in secrets_not_echoed:
        assert secret not in response.text
        assert secret not in response.headers["WWW-Authenticate"]


def rows_of_session(db: Session, session_id: uuid.UUID) -> list[RefreshToken]:
    """The session's rows as the database holds them now, not as this `db` last saw them."""
    db.commit()
    statement = (
        select(RefreshToken)
        .where(RefreshToken.session_id == session_id)
        .execution_options(populate_existing=True)
    )
    return list(db.scalars(statement))


# Rotation


def test_refreshing_returns_a_new_pair_with_a_different_refresh_token(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    pair = login(client)

    response = refresh(client, pair["refresh_token"])

    assert response.status_code == 200, response.text
    new_pair = response.json()
    assert new_pair.keys() >= PAIR_FIELDS
    assert new_pair["token_type"] == "Bearer"
    assert new_pair["refresh_token"] != pair["refresh_token"]
    assert new_pair["access_token"] != pair["access_token"]
    assert client.get("/test", headers=bearer(new_pair["access_token"])).status_code == 200


def test_a_refreshed_pair_is_never_cached(client: TestClient, db: Session) -> None:
    make_user(db)
    pair = login(client)

    response = refresh(client, pair["refresh_token"])

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_a_refreshed_pair_stays_in_the_same_session(client: TestClient, db: Session) -> None:
    make_user(db)
    pair = login(client)

    new_pair = refreshed(client, pair["refresh_token"])

    assert session_id_of(new_pair["access_token"]) == session_id_of(pair["access_token"])


def test_a_refresh_token_is_url_safe_and_carries_at_least_256_bits(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    pair = login(client)

    new_pair = refreshed(client, pair["refresh_token"])

    for token in (pair["refresh_token"], new_pair["refresh_token"]):
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        # 256 bits in base64url is at least 43 characters.
        assert len(token) >= 43


# Spent tokens and reuse


def test_a_spent_refresh_token_is_refused_on_second_use(client: TestClient, db: Session) -> None:
    make_user(db)
    pair = login(client)
    refreshed(client, pair["refresh_token"])

    response = refresh(client, pair["refresh_token"])

    assert_invalid_token(response, pair["refresh_token"])


def test_reusing_a_spent_refresh_token_revokes_the_family(client: TestClient, db: Session) -> None:
    make_user(db)
    token_a = login(client)
    token_b = refreshed(client, token_a["refresh_token"])

    reuse = refresh(client, token_a["refresh_token"])

    assert_invalid_token(reuse, token_a["refresh_token"])
    assert_invalid_token(refresh(client, token_b["refresh_token"]), token_b["refresh_token"])


def test_reusing_a_spent_refresh_token_ends_the_newest_descendants_access_token_at_once(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    token_a = login(client)
    token_b = refreshed(client, token_a["refresh_token"])
    assert client.get("/test", headers=bearer(token_b["access_token"])).status_code == 200

    refresh(client, token_a["refresh_token"])

    assert_invalid_token(client.get("/test", headers=bearer(token_b["access_token"])))


def test_reusing_an_older_ancestor_revokes_every_descendant(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    token_a = login(client)
    token_b = refreshed(client, token_a["refresh_token"])
    token_c = refreshed(client, token_b["refresh_token"])

    assert_invalid_token(refresh(client, token_a["refresh_token"]))

    assert_invalid_token(refresh(client, token_c["refresh_token"]))
    assert_invalid_token(client.get("/test", headers=bearer(token_c["access_token"])))


def test_the_revocation_on_reuse_survives_the_401_response(client: TestClient, db: Session) -> None:
    make_user(db)
    token_a = login(client)
    token_b = refreshed(client, token_a["refresh_token"])
    token_c = refreshed(client, token_b["refresh_token"])
    session_id = session_id_of(token_c["access_token"])

    assert refresh(client, token_b["refresh_token"]).status_code == 401

    rows = rows_of_session(db, session_id)
    assert len(rows) == 3
    assert all(row.revoked_at is not None for row in rows)


def test_reuse_does_not_touch_the_users_other_sessions(client: TestClient, db: Session) -> None:
    make_user(db)
    phone = login(client)
    laptop = login(client)
    refreshed(client, laptop["refresh_token"])

    assert refresh(client, laptop["refresh_token"]).status_code == 401

    assert client.get("/test", headers=bearer(phone["access_token"])).status_code == 200
    assert refresh(client, phone["refresh_token"]).status_code == 200


# Tokens that never were refresh tokens


def test_an_access_token_is_refused_as_a_refresh_token(client: TestClient, db: Session) -> None:
    make_user(db)
    pair = login(client)

    response = refresh(client, pair["access_token"])

    assert_invalid_token(response, pair["access_token"])
    # The refused attempt cost the real refresh token nothing.
    assert refresh(client, pair["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    "refresh_token",
    [
        pytest.param(secrets.token_urlsafe(32), id="unknown-well-formed"),
        pytest.param("", id="empty"),
        pytest.param("not a refresh token at all!", id="garbage"),
        pytest.param("\u00e5\u00e4\u00f6 \u2603 snowman", id="non-ascii"),
        pytest.param("A" * 10_000, id="overlong"),
        pytest.param(secrets.token_urlsafe(32) + "x", id="one-character-too-many"),
    ],
)
def test_a_refresh_token_the_service_never_issued_is_401(
    client: TestClient, db: Session, refresh_token: str
) -> None:
    make_user(db)
    pair = login(client)

    response = refresh(client, refresh_token)

    assert_invalid_token(response, *([refresh_token] if len(refresh_token) > 3 else []))
    assert refresh(client, pair["refresh_token"]).status_code == 200


def test_a_prefix_of_a_real_refresh_token_is_401(client: TestClient, db: Session) -> None:
    make_user(db)
    pair = login(client)

    response = refresh(client, pair["refresh_token"][:-1])

    assert_invalid_token(response)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b"{}", "application/json", id="missing-field"),
        pytest.param(b'{"refresh_token": 123}', "application/json", id="number"),
        pytest.param(b'{"refresh_token": null}', "application/json", id="null"),
        pytest.param(b'{"refresh_token": ["a"]}', "application/json", id="list"),
        pytest.param(b'["refresh_token"]', "application/json", id="array-body"),
        pytest.param(b'{"refresh_token": "a', "application/json", id="truncated-json"),
        pytest.param(b"refresh_token=abc", "application/json", id="not-json"),
        pytest.param(b'{"refresh_token": "abc\\u0000def"}', "application/json", id="nul-byte"),
        pytest.param(b'{"refresh_token": "\\ud800"}', "application/json", id="lone-surrogate"),
    ],
)
def test_a_malformed_refresh_body_is_422(
    client: TestClient, content: bytes, content_type: str
) -> None:
    response = client.post(
        "/account/refresh", content=content, headers={"Content-Type": content_type}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "errors" in response.json()


# Expiry


def test_a_refresh_token_idle_for_longer_than_its_ttl_is_401(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    make_user(db)
    start = freeze_clock(app)
    pair = login(client)
    idle_ttl = app.state.runtime.settings.TOKEN_REFRESH_TTL_SECONDS

    set_clock(app, start + timedelta(seconds=idle_ttl + 1))
    response = refresh(client, pair["refresh_token"])

    assert_invalid_token(response)


def test_a_refresh_token_used_just_before_its_idle_ttl_is_accepted_and_its_child_lives_on(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    make_user(db)
    start = freeze_clock(app)
    pair = login(client)
    idle_ttl = timedelta(seconds=app.state.runtime.settings.TOKEN_REFRESH_TTL_SECONDS)

    set_clock(app, start + idle_ttl - timedelta(seconds=1))
    child = refreshed(client, pair["refresh_token"])
    # The first token's idle life is over now, the child's is not.
    set_clock(app, start + idle_ttl + timedelta(seconds=10))

    assert refresh(client, child["refresh_token"]).status_code == 200


@pytest.fixture
def short_session_env(settings_env: dict[str, str]) -> dict[str, str]:
    """A family that ends after 300 s although each refresh token may idle for an hour."""
    settings_env["TOKEN_SESSION_MAX_SECONDS"] = "300"
    settings_env["TOKEN_REFRESH_TTL_SECONDS"] = "3600"
    return settings_env


@pytest.mark.usefixtures("short_session_env")
def test_refresh_expires_in_at_login_is_the_session_max_when_that_ends_first(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    make_user(db)
    freeze_clock(app)

    pair = login(client)

    assert pair["refresh_expires_in"] == 300


@pytest.mark.usefixtures("short_session_env")
def test_a_refresh_after_the_family_ends_is_401_although_the_token_could_still_idle(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    make_user(db)
    start = freeze_clock(app)
    pair = login(client)
    set_clock(app, start + timedelta(seconds=200))
    child = refreshed(client, pair["refresh_token"])
    # The child could idle until start + 200 + 3600, but the family ends at start + 300.
    assert child["refresh_expires_in"] == 100

    set_clock(app, start + timedelta(seconds=301))
    response = refresh(client, child["refresh_token"])

    assert_invalid_token(response)


@pytest.fixture
def one_minute_session_env(settings_env: dict[str, str]) -> dict[str, str]:
    settings_env["TOKEN_SESSION_MAX_SECONDS"] = "60"
    settings_env["TOKEN_ACCESS_TTL_SECONDS"] = "1200"
    return settings_env


@pytest.mark.usefixtures("one_minute_session_env")
def test_an_access_token_never_outlives_its_family(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    make_user(db)
    start = freeze_clock(app)
    session_end = start + timedelta(seconds=60)

    pair = login(client)

    assert pair["expires_in"] <= 60
    assert claims_of(pair["access_token"])["exp"] <= session_end.timestamp()
    listed = client.get("/account/sessions", headers=bearer(pair["access_token"])).json()
    assert claims_of(pair["access_token"])["exp"] <= parse_rfc3339(listed[0]["expires_at"])


@pytest.mark.usefixtures("one_minute_session_env")
def test_an_access_token_from_a_late_refresh_is_capped_at_the_family_end(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    make_user(db)
    start = freeze_clock(app)
    session_end = start + timedelta(seconds=60)
    pair = login(client)

    set_clock(app, start + timedelta(seconds=45))
    child = refreshed(client, pair["refresh_token"])

    assert child["expires_in"] <= 15
    claims = claims_of(child["access_token"])
    assert claims["exp"] <= session_end.timestamp()
    # expires_in is the real remaining life: exp - iat.
    assert child["expires_in"] == claims["exp"] - claims["iat"]


def parse_rfc3339(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# Session id


def test_the_sid_claim_is_the_session_id_listed_by_get_sessions(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    pair = login(client)

    listed = client.get("/account/sessions", headers=bearer(pair["access_token"]))

    assert listed.status_code == 200
    [session] = listed.json()
    assert session["id"] == claims_of(pair["access_token"])["sid"]
    assert session["current"] is True


# The token endpoint's refresh_token grant


def token_endpoint(client: TestClient, **form: str) -> httpx2.Response:
    return client.post("/account/token", data=form)


def test_the_token_endpoint_rotates_a_refresh_token(client: TestClient, db: Session) -> None:
    make_user(db)
    pair = login(client)

    response = token_endpoint(
        client, grant_type="refresh_token", refresh_token=pair["refresh_token"]
    )

    assert response.status_code == 200, response.text
    new_pair = response.json()
    assert new_pair.keys() >= PAIR_FIELDS
    assert new_pair["token_type"] == "Bearer"
    assert new_pair["refresh_token"] != pair["refresh_token"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert client.get("/test", headers=bearer(new_pair["access_token"])).status_code == 200
    # The presented token is spent, exactly as on /account/refresh.
    assert refresh(client, pair["refresh_token"]).status_code == 401


@pytest.mark.parametrize(
    "presented",
    [
        pytest.param("spent", id="spent"),
        pytest.param("access", id="access-token"),
        pytest.param("unknown", id="unknown"),
        pytest.param("overlong", id="overlong"),
    ],
)
def test_a_refresh_grant_failure_on_the_token_endpoint_is_400_invalid_grant(
    client: TestClient, db: Session, presented: str
) -> None:
    make_user(db)
    pair = login(client)
    tokens = {
        "spent": pair["refresh_token"],
        "access": pair["access_token"],
        "unknown": secrets.token_urlsafe(32),
        "overlong": "A" * 10_000,
    }
    if presented == "spent":
        refreshed(client, pair["refresh_token"])

    response = token_endpoint(client, grant_type="refresh_token", refresh_token=tokens[presented])

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"
    assert tokens[presented] not in response.text


def test_reuse_on_the_token_endpoint_revokes_the_family(client: TestClient, db: Session) -> None:
    make_user(db)
    token_a = login(client)
    token_b = refreshed(client, token_a["refresh_token"])

    reuse = token_endpoint(
        client, grant_type="refresh_token", refresh_token=token_a["refresh_token"]
    )

    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert refresh(client, token_b["refresh_token"]).status_code == 401
    assert client.get("/test", headers=bearer(token_b["access_token"])).status_code == 401
    rows = rows_of_session(db, session_id_of(token_b["access_token"]))
    assert rows
    assert all(row.revoked_at is not None for row in rows)


def test_a_refresh_grant_without_a_refresh_token_is_400_invalid_request(
    client: TestClient,
) -> None:
    response = token_endpoint(client, grant_type="refresh_token")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# Storage


def test_a_refresh_token_is_stored_only_as_its_sha256_digest(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    pair = login(client)
    child = refreshed(client, pair["refresh_token"])
    issued = [pair["refresh_token"], child["refresh_token"]]

    db.commit()
    rows = db.execute(text("SELECT * FROM refresh_tokens")).mappings().all()

    assert len(rows) == 2
    for row in rows:
        for value in row.values():
            if value is None:
                continue
            for token in issued:
                if isinstance(value, bytes | memoryview):
                    assert token.encode() not in bytes(value)
                else:
                    assert token not in str(value)
    digests = {bytes(row["token_digest"]) for row in rows}
    assert digests == {hashlib.sha256(token.encode()).digest() for token in issued}
