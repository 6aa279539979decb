"""Ending sessions: logout, logout-all, password change, the sessions list and DELETE of one."""

import re
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.models import RefreshToken
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user

NEW_PASSWORD = "another quite long passphrase"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
BARE_CHALLENGE = 'Bearer realm="http://testserver"'
INVALID_TOKEN_CHALLENGE = 'Bearer realm="http://testserver", error="invalid_token"'
SESSION_FIELDS = {
    "id",
    "created_at",
    "last_used_at",
    "expires_at",
    "user_agent",
    "ip",
    "current",
}


def refresh(client: TestClient, refresh_token: str) -> httpx2.Response:
    return client.post("/account/refresh", json={"refresh_token": refresh_token})


def logout(client: TestClient, refresh_token: str) -> httpx2.Response:
    return client.post("/account/logout", json={"refresh_token": refresh_token})


def session_id_of(access_token: str) -> str:
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    sid: str = claims["sid"]
    return sid


def list_sessions(client: TestClient, access_token: str) -> list[dict[str, Any]]:
    response = client.get("/account/sessions", headers=bearer(access_token))
    assert response.status_code == 200, response.text
    sessions: list[dict[str, Any]] = response.json()
    return sessions


def parse_rfc3339(value: str) -> datetime:
    assert RFC3339_UTC.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_session_alive(client: TestClient, pair: dict[str, Any]) -> dict[str, Any]:
    """The pair's access token passes and its refresh token rotates; the new pair."""
    assert client.get("/test", headers=bearer(pair["access_token"])).status_code == 200
    response = refresh(client, pair["refresh_token"])
    assert response.status_code == 200, response.text
    new_pair: dict[str, Any] = response.json()
    return new_pair


def assert_session_ended(client: TestClient, pair: dict[str, Any]) -> None:
    """The access token is refused at once, and the refresh token too."""
    test = client.get("/test", headers=bearer(pair["access_token"]))
    assert test.status_code == 401, test.text
    assert test.headers["WWW-Authenticate"].startswith(INVALID_TOKEN_CHALLENGE)
    assert refresh(client, pair["refresh_token"]).status_code == 401


def assert_rows_revoked(db: Session, session_id: str) -> None:
    db.commit()
    rows = list(
        db.scalars(
            select(RefreshToken)
            .where(RefreshToken.session_id == uuid.UUID(session_id))
            .execution_options(populate_existing=True)
        )
    )
    assert rows
    assert all(row.revoked_at is not None for row in rows)


def assert_problem(response: httpx2.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    return body


# Logout


def test_logout_answers_204_and_ends_the_session(client: TestClient, db: Session) -> None:
    make_user(db)
    pair = login(client)
    assert client.get("/test", headers=bearer(pair["access_token"])).status_code == 200

    response = logout(client, pair["refresh_token"])

    assert response.status_code == 204
    assert response.content == b""
    assert_session_ended(client, pair)
    assert_rows_revoked(db, session_id_of(pair["access_token"]))


def test_logout_ends_only_that_session(client: TestClient, db: Session) -> None:
    make_user(db)
    phone = login(client)
    laptop = login(client)

    assert logout(client, laptop["refresh_token"]).status_code == 204

    assert_session_alive(client, phone)


@pytest.mark.parametrize(
    "refresh_token",
    [
        pytest.param(secrets.token_urlsafe(32), id="unknown"),
        pytest.param("", id="empty"),
        pytest.param("not a token", id="garbage"),
        pytest.param("A" * 10_000, id="overlong"),
    ],
)
def test_logout_with_an_unknown_token_answers_204_and_ends_nothing(
    client: TestClient, db: Session, refresh_token: str
) -> None:
    make_user(db)
    pair = login(client)

    response = logout(client, refresh_token)

    assert response.status_code == 204
    assert_session_alive(client, pair)


def test_logout_with_a_spent_token_of_a_live_family_revokes_the_family(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    token_a = login(client)
    token_b = refresh(client, token_a["refresh_token"]).json()

    response = logout(client, token_a["refresh_token"])

    assert response.status_code == 204
    assert_session_ended(client, token_b)
    assert_rows_revoked(db, session_id_of(token_b["access_token"]))


def test_logout_twice_answers_204_both_times(client: TestClient, db: Session) -> None:
    make_user(db)
    pair = login(client)

    assert logout(client, pair["refresh_token"]).status_code == 204
    assert logout(client, pair["refresh_token"]).status_code == 204


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{}", id="missing-field"),
        pytest.param(b'{"refresh_token": 42}', id="number"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"refresh_token": "a\\u0000b"}', id="nul-byte"),
    ],
)
def test_logout_with_a_malformed_body_is_422(client: TestClient, content: bytes) -> None:
    response = client.post(
        "/account/logout", content=content, headers={"Content-Type": "application/json"}
    )

    assert_problem(response, 422)


# Logout everywhere


def test_logout_all_ends_every_session_of_the_user(client: TestClient, db: Session) -> None:
    make_user(db)
    phone = login(client)
    laptop = login(client)

    response = client.post("/account/logout-all", headers=bearer(phone["access_token"]))

    assert response.status_code == 204
    assert_session_ended(client, phone)
    assert_session_ended(client, laptop)
    for pair in (phone, laptop):
        assert_rows_revoked(db, session_id_of(pair["access_token"]))


def test_logout_all_leaves_other_users_sessions_alone(client: TestClient, db: Session) -> None:
    make_user(db)
    make_user(db, email="bob@example.com")
    ada = login(client)
    bob = login(client, "bob@example.com")

    response = client.post("/account/logout-all", headers=bearer(ada["access_token"]))

    assert response.status_code == 204
    assert_session_alive(client, bob)


def test_logging_in_again_after_logout_all_starts_a_working_session(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    old = login(client)
    client.post("/account/logout-all", headers=bearer(old["access_token"]))

    assert_session_alive(client, login(client))


# Password change


def change_password(
    client: TestClient, access_token: str, current: str, new: str
) -> httpx2.Response:
    return client.post(
        "/account/password",
        json={"current_password": current, "new_password": new},
        headers=bearer(access_token),
    )


def attempt_login(client: TestClient, password: str) -> httpx2.Response:
    return client.post("/account/login", json={"email": "ada@example.com", "password": password})


def test_changing_the_password_replaces_it(client: TestClient, db: Session) -> None:
    make_user(db)
    pair = login(client)

    response = change_password(client, pair["access_token"], DEFAULT_PASSWORD, NEW_PASSWORD)

    assert response.status_code == 204
    assert response.content == b""
    assert attempt_login(client, DEFAULT_PASSWORD).status_code == 400
    assert attempt_login(client, NEW_PASSWORD).status_code == 200


def test_changing_the_password_ends_every_session_of_the_user(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    make_user(db, email="bob@example.com")
    phone = login(client)
    laptop = login(client)
    bob = login(client, "bob@example.com")

    response = change_password(client, laptop["access_token"], DEFAULT_PASSWORD, NEW_PASSWORD)

    assert response.status_code == 204
    assert_session_ended(client, phone)
    assert_session_ended(client, laptop)
    assert_session_alive(client, bob)


def test_a_wrong_current_password_is_400_and_changes_nothing(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    pair = login(client)

    response = change_password(
        client, pair["access_token"], "not the current password", NEW_PASSWORD
    )

    body = assert_problem(response, 400)
    assert "not the current password" not in response.text
    assert NEW_PASSWORD not in response.text
    assert body["type"].startswith("/problems/")
    assert_session_alive(client, pair)
    assert attempt_login(client, NEW_PASSWORD).status_code == 400
    assert attempt_login(client, DEFAULT_PASSWORD).status_code == 200


@pytest.mark.parametrize(
    "new_password",
    [
        pytest.param("short", id="too-short"),
        pytest.param("fourteen chars", id="one-below-the-minimum"),
        pytest.param("yfdbufnjh10305070", id="common"),
        pytest.param("YFDBUFNJH10305070", id="common-in-capitals"),
        pytest.param("x" * 257, id="over-256"),
    ],
)
def test_a_weak_new_password_is_422_and_changes_nothing(
    client: TestClient, db: Session, new_password: str
) -> None:
    make_user(db)
    pair = login(client)

    response = change_password(client, pair["access_token"], DEFAULT_PASSWORD, new_password)

    body = assert_problem(response, 422)
    assert body["errors"]
    assert new_password not in response.text
    assert_session_alive(client, pair)
    assert attempt_login(client, DEFAULT_PASSWORD).status_code == 200


# The sessions list


def test_get_sessions_lists_each_live_session_with_its_fields(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    make_user(db)
    now = datetime.now(UTC).replace(microsecond=0)
    app.state.runtime.clock = lambda: now
    phone = login_as(client, "Phone/1.0")
    laptop = login_as(client, "Laptop/2.0")
    refresh_ttl = timedelta(seconds=app.state.runtime.settings.TOKEN_REFRESH_TTL_SECONDS)

    sessions = {s["id"]: s for s in list_sessions(client, laptop["access_token"])}

    assert set(sessions) == {
        session_id_of(phone["access_token"]),
        session_id_of(laptop["access_token"]),
    }
    for session in sessions.values():
        assert session.keys() == SESSION_FIELDS
        assert uuid.UUID(session["id"])
        assert parse_rfc3339(session["created_at"]) == now
        assert session["last_used_at"] is None
        assert parse_rfc3339(session["expires_at"]) == now + refresh_ttl
        assert session["ip"] == "testclient"
    assert sessions[session_id_of(phone["access_token"])]["user_agent"] == "Phone/1.0"
    assert sessions[session_id_of(laptop["access_token"])]["user_agent"] == "Laptop/2.0"


def login_as(client: TestClient, user_agent: str) -> dict[str, Any]:
    response = client.post(
        "/account/login",
        json={"email": "ada@example.com", "password": DEFAULT_PASSWORD},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


def test_current_is_true_only_for_the_callers_session(client: TestClient, db: Session) -> None:
    make_user(db)
    phone = login(client)
    laptop = login(client)

    for caller, other in ((phone, laptop), (laptop, phone)):
        current = {s["id"]: s["current"] for s in list_sessions(client, caller["access_token"])}
        assert current == {
            session_id_of(caller["access_token"]): True,
            session_id_of(other["access_token"]): False,
        }


def test_a_refresh_sets_last_used_at_and_the_latest_client(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    make_user(db)
    start = datetime.now(UTC).replace(microsecond=0)
    app.state.runtime.clock = lambda: start
    pair = login_as(client, "Phone/1.0")
    refresh_ttl = timedelta(seconds=app.state.runtime.settings.TOKEN_REFRESH_TTL_SECONDS)
    later = start + timedelta(seconds=90)
    app.state.runtime.clock = lambda: later

    response = client.post(
        "/account/refresh",
        json={"refresh_token": pair["refresh_token"]},
        headers={"User-Agent": "Phone/1.1"},
    )
    assert response.status_code == 200, response.text

    # The login's access token is still valid by the wall clock; the new one starts at `later`.
    [session] = list_sessions(client, pair["access_token"])
    assert session["id"] == session_id_of(pair["access_token"])
    assert parse_rfc3339(session["created_at"]) == start
    assert parse_rfc3339(session["last_used_at"]) == later
    assert parse_rfc3339(session["expires_at"]) == later + refresh_ttl
    assert session["user_agent"] == "Phone/1.1"
    assert session["current"] is True


def test_get_sessions_leaves_out_ended_sessions_and_other_users(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    make_user(db, email="bob@example.com")
    kept = login(client)
    ended = login(client)
    login(client, "bob@example.com")
    logout(client, ended["refresh_token"])

    sessions = list_sessions(client, kept["access_token"])

    assert [s["id"] for s in sessions] == [session_id_of(kept["access_token"])]


# DELETE /account/sessions/{id}


def test_deleting_a_session_ends_its_tokens(client: TestClient, db: Session) -> None:
    make_user(db)
    phone = login(client)
    laptop = login(client)

    response = client.delete(
        f"/account/sessions/{session_id_of(laptop['access_token'])}",
        headers=bearer(phone["access_token"]),
    )

    assert response.status_code == 204
    assert response.content == b""
    assert_session_ended(client, laptop)
    assert_rows_revoked(db, session_id_of(laptop["access_token"]))
    assert_session_alive(client, phone)


def test_deleting_the_callers_own_session_ends_its_access_token_at_once(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    pair = login(client)

    response = client.delete(
        f"/account/sessions/{session_id_of(pair['access_token'])}",
        headers=bearer(pair["access_token"]),
    )

    assert response.status_code == 204
    assert_session_ended(client, pair)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("other-users", id="another-users-session"),
        pytest.param("malformed", id="malformed-id"),
        pytest.param("ended", id="ended-session"),
        pytest.param("unknown", id="unknown-uuid"),
    ],
)
def test_deleting_a_session_that_is_not_the_callers_live_one_is_404(
    client: TestClient, db: Session, target: str
) -> None:
    make_user(db)
    make_user(db, email="bob@example.com")
    ada = login(client)
    ended = login(client)
    logout(client, ended["refresh_token"])
    bob = login(client, "bob@example.com")
    session_ids = {
        "other-users": session_id_of(bob["access_token"]),
        "malformed": "not-a-session-id",
        "ended": session_id_of(ended["access_token"]),
        "unknown": str(uuid.uuid4()),
    }

    response = client.delete(
        f"/account/sessions/{session_ids[target]}", headers=bearer(ada["access_token"])
    )

    assert_problem(response, 404)
    assert_session_alive(client, bob)
    assert_session_alive(client, ada)


# Authentication


@pytest.mark.parametrize(
    ("method", "path", "json"),
    [
        pytest.param("POST", "/account/logout-all", None, id="logout-all"),
        pytest.param(
            "POST",
            "/account/password",
            {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
            id="password",
        ),
        pytest.param("GET", "/account/sessions", None, id="list-sessions"),
        pytest.param("DELETE", f"/account/sessions/{uuid.uuid4()}", None, id="delete-session"),
        pytest.param("GET", "/account/me", None, id="me"),
        pytest.param("GET", "/test", None, id="test"),
    ],
)
def test_protected_endpoints_without_a_token_are_401(
    client: TestClient, db: Session, method: str, path: str, json: dict[str, str] | None
) -> None:
    make_user(db)
    pair = login(client)

    response = client.request(method, path, json=json)

    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE
    # Nothing happened on the caller's behalf.
    assert_session_alive(client, pair)
    assert attempt_login(client, DEFAULT_PASSWORD).status_code == 200


# Across a restart


def end_by_logout(client: TestClient, pair: dict[str, Any]) -> None:
    assert logout(client, pair["refresh_token"]).status_code == 204


def end_by_logout_all(client: TestClient, pair: dict[str, Any]) -> None:
    response = client.post("/account/logout-all", headers=bearer(pair["access_token"]))
    assert response.status_code == 204


def end_by_password_change(client: TestClient, pair: dict[str, Any]) -> None:
    response = change_password(client, pair["access_token"], DEFAULT_PASSWORD, NEW_PASSWORD)
    assert response.status_code == 204


def end_by_delete(client: TestClient, pair: dict[str, Any]) -> None:
    response = client.delete(
        f"/account/sessions/{session_id_of(pair['access_token'])}",
        headers=bearer(pair["access_token"]),
    )
    assert response.status_code == 204


def end_by_reuse(client: TestClient, pair: dict[str, Any]) -> None:
    # The access token of `pair` belongs to the family the replay revokes.
    assert refresh(client, pair["refresh_token"]).status_code == 200
    assert refresh(client, pair["refresh_token"]).status_code == 401


@pytest.mark.parametrize(
    "end_session",
    [
        pytest.param(end_by_logout, id="logout"),
        pytest.param(end_by_logout_all, id="logout-all"),
        pytest.param(end_by_password_change, id="password-change"),
        pytest.param(end_by_delete, id="delete-session"),
        pytest.param(end_by_reuse, id="reuse"),
    ],
)
def test_an_ended_sessions_access_token_stays_refused_across_a_restart(
    client: TestClient,
    db: Session,
    settings: Settings,
    end_session: Callable[[TestClient, dict[str, Any]], None],
) -> None:
    make_user(db)
    make_user(db, email="bob@example.com")
    ada = login(client)
    bob = login(client, "bob@example.com")
    end_session(client, ada)

    with TestClient(create_app(settings), base_url="http://testserver") as restarted:
        refused = restarted.get("/test", headers=bearer(ada["access_token"]))
        accepted = restarted.get("/test", headers=bearer(bob["access_token"]))

    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith(INVALID_TOKEN_CHALLENGE)
    assert accepted.status_code == 200
