"""The account lifecycle through the real HTTP API, with aiosmtpd as the mail relay:
verification, password reset by mail, profile edits and account deletion."""

import re
from datetime import timedelta
from email.message import Message

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.models import AccountLink, MailOutbox, RefreshToken, User
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user
from tests.mail.relay import Relay, smtp_env, wait_until

NEW_PASSWORD = "a fresh and rather long passphrase"
TOKEN_PATTERN = re.compile(r"/account/(verify-email|reset-password)#token=([A-Za-z0-9_-]{43})")


@pytest.fixture
def settings_env(settings_env: dict[str, str], relay: Relay) -> dict[str, str]:
    return {**settings_env, **smtp_env(relay.port)}


def mails(relay: Relay, to: str, subject: str) -> list[Message]:
    return [message for message in relay.to(to) if message["Subject"] == subject]


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def mailed_token(relay: Relay, to: str, subject: str, count: int = 1) -> str:
    """The token of the `count`-th mail with this subject to this address (waiting for it)."""
    wait_until(lambda: len(mails(relay, to, subject)) >= count, what=f"mail {count} to {to}")
    match = TOKEN_PATTERN.search(body_of(mails(relay, to, subject)[count - 1]))
    assert match is not None
    return match.group(2)


def forgot(client: TestClient, email: str = "ada@example.com") -> dict[str, str]:
    response = client.post("/account/forgot-password", json={"email": email})
    assert response.status_code == 202, response.text
    body: dict[str, str] = response.json()
    return body


def reset(client: TestClient, token: str, password: str = NEW_PASSWORD) -> int:
    response = client.post(
        "/account/reset-password", json={"token": token, "new_password": password}
    )
    return response.status_code


def test_registering_mails_a_link_that_verifies_the_address_once(
    client: TestClient, relay: Relay
) -> None:
    registered = client.post(
        "/account/register", json={"email": "Grace@Example.com", "password": DEFAULT_PASSWORD}
    )
    assert registered.status_code == 201
    assert registered.json()["email_verified"] is False

    token = mailed_token(relay, "grace@example.com", "Verify your email address")
    [message] = mails(relay, "grace@example.com", "Verify your email address")
    assert f"http://testserver/account/verify-email#token={token}" in body_of(message)
    assert client.post("/account/verify-email", json={"token": token}).status_code == 204

    access = login(client, email="grace@example.com")["access_token"]
    assert client.get("/account/me", headers=bearer(access)).json()["email_verified"] is True
    again = client.post("/account/verify-email", json={"token": token})
    assert again.status_code == 400
    assert again.json()["type"] == "/problems/invalid-link"
    assert token not in again.text


def test_resend_mails_a_new_link_and_voids_the_older_one(
    client: TestClient, relay: Relay, db: Session
) -> None:
    make_user(db)
    response = client.post("/account/verify-email/resend", json={"email": "ada@example.com"})
    assert response.status_code == 202
    first = mailed_token(relay, "ada@example.com", "Verify your email address")
    client.post("/account/verify-email/resend", json={"email": "ada@example.com"})
    second = mailed_token(relay, "ada@example.com", "Verify your email address", count=2)

    assert client.post("/account/verify-email", json={"token": first}).status_code == 400
    assert client.post("/account/verify-email", json={"token": second}).status_code == 204
    assert db.scalar(select(User.email_verified).where(User.email == "ada@example.com"))


def test_a_reset_sets_the_password_ends_every_session_and_verifies_the_address(
    client: TestClient, relay: Relay, db: Session
) -> None:
    make_user(db)
    old = login(client)
    forgot(client)
    token = mailed_token(relay, "ada@example.com", "Reset your password")

    assert reset(client, token) == 204

    assert client.get("/account/me", headers=bearer(old["access_token"])).status_code == 401
    refreshed = client.post("/account/refresh", json={"refresh_token": old["refresh_token"]})
    assert refreshed.status_code == 401
    bad = client.post(
        "/account/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )
    assert bad.status_code == 400
    new = login(client, password=NEW_PASSWORD)
    assert client.get("/account/me", headers=bearer(new["access_token"])).json()["email_verified"]
    reused = client.post(
        "/account/reset-password", json={"token": token, "new_password": "another one entirely ok"}
    )
    assert reused.status_code == 400
    assert reused.json()["type"] == "/problems/invalid-link"
    login(client, password=NEW_PASSWORD)


def test_an_expired_reset_link_is_refused(
    app: FastAPI, client: TestClient, relay: Relay, db: Session
) -> None:
    make_user(db)
    forgot(client)
    token = mailed_token(relay, "ada@example.com", "Reset your password")
    runtime = app.state.runtime
    later = runtime.clock() + timedelta(seconds=3601)
    runtime.clock = lambda: later

    assert reset(client, token) == 400
    login(client)  # the password is unchanged


def test_a_newer_reset_link_voids_the_older_one(
    client: TestClient, relay: Relay, db: Session
) -> None:
    make_user(db)
    forgot(client)
    first = mailed_token(relay, "ada@example.com", "Reset your password")
    forgot(client)
    second = mailed_token(relay, "ada@example.com", "Reset your password", count=2)

    assert reset(client, first) == 400
    assert reset(client, second) == 204


def test_a_password_change_voids_outstanding_reset_links(
    client: TestClient, relay: Relay, db: Session
) -> None:
    make_user(db)
    forgot(client)
    token = mailed_token(relay, "ada@example.com", "Reset your password")
    access = login(client)["access_token"]
    changed = client.post(
        "/account/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(access),
    )
    assert changed.status_code == 204

    assert reset(client, token, "yet another long passphrase") == 400


def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    client: TestClient, relay: Relay, db: Session
) -> None:
    make_user(db)
    unknown = forgot(client, "nobody-here@example.com")
    known = forgot(client)

    assert unknown == known
    # Requests are answered in order: once ada's mail is there, the unknown one is done.
    mailed_token(relay, "ada@example.com", "Reset your password")
    assert relay.to("nobody-here@example.com") == []
    unknown_resend = client.post(
        "/account/verify-email/resend", json={"email": "nobody-here@example.com"}
    )
    known_resend = client.post("/account/verify-email/resend", json={"email": "ada@example.com"})
    assert unknown_resend.status_code == known_resend.status_code == 202
    assert unknown_resend.json() == known_resend.json()


@pytest.fixture
def one_mail_an_hour(settings_env: dict[str, str]) -> dict[str, str]:
    settings_env["MAIL_PER_ADDRESS_LIMIT"] = "1/hour"
    return settings_env


def test_past_the_per_address_limit_no_link_is_made_and_the_mailed_one_stays_valid(
    one_mail_an_hour: dict[str, str], client: TestClient, relay: Relay, db: Session
) -> None:
    make_user(db)
    make_user(db, email="marker@example.com")
    forgot(client)
    token = mailed_token(relay, "ada@example.com", "Reset your password")

    assert forgot(client) == forgot(client, "marker@example.com")
    mailed_token(relay, "marker@example.com", "Reset your password")

    assert len(mails(relay, "ada@example.com", "Reset your password")) == 1
    assert reset(client, token) == 204


def test_a_weak_new_password_is_a_422_and_leaves_the_link_usable(
    client: TestClient, relay: Relay, db: Session
) -> None:
    make_user(db)
    forgot(client)
    token = mailed_token(relay, "ada@example.com", "Reset your password")

    weak = client.post("/account/reset-password", json={"token": token, "new_password": "short"})
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["loc"] == ["body", "new_password"]
    assert reset(client, token) == 204


def test_a_bad_token_is_checked_before_the_password_rules(client: TestClient) -> None:
    # The link first: a weak password with a bad link is a 400, not a 422.
    response = client.post(
        "/account/reset-password", json={"token": "x" * 43, "new_password": "short"}
    )
    assert response.status_code == 400


BAD_TOKENS = {
    "empty": "",
    "short": "abc",
    "well formed but unknown": "A" * 43,
    "ten kilobytes": "A" * 10_000,
    "unicode": "é" * 43,
    "emoji": "\U0001f511" * 43,
    "spaces": " " * 43,
    "sql": "' OR 1=1 --" + "A" * 32,
    "fragment": "token=" + "A" * 43,
}


@pytest.mark.parametrize("token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
@pytest.mark.parametrize("path", ["/account/verify-email", "/account/reset-password"])
def test_a_malformed_or_foreign_token_is_an_invalid_link_and_changes_nothing(
    client: TestClient, db: Session, path: str, token: str
) -> None:
    user = make_user(db)
    response = client.post(path, json={"token": token, "new_password": NEW_PASSWORD})

    assert response.status_code == 400
    assert response.json()["type"] == "/problems/invalid-link"
    db.refresh(user)
    assert user.email_verified is False
    login(client)


MALFORMED_BODIES = {
    "nul": '{"token": "A\\u0000", "new_password": "a fresh and rather long passphrase"}',
    "lone surrogate": '{"token": "\\ud800", "new_password": "a fresh and rather long pass"}',
    "number": '{"token": 42, "new_password": "a fresh and rather long passphrase"}',
    "null": '{"token": null, "new_password": "a fresh and rather long passphrase"}',
    "empty object": "{}",
    "not json": '{"token": ',
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_a_malformed_body_is_a_422(client: TestClient, body: str) -> None:
    for path in ("/account/verify-email", "/account/reset-password"):
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422


@pytest.mark.parametrize("email", ["not-an-email", "", "é" * 400, "a\x00@example.com"])
def test_forgot_and_resend_refuse_a_malformed_address(client: TestClient, email: str) -> None:
    for path in ("/account/forgot-password", "/account/verify-email/resend"):
        assert client.post(path, json={"email": email}).status_code == 422


def test_the_link_table_keeps_digests_only(client: TestClient, relay: Relay, db: Session) -> None:
    make_user(db)
    forgot(client)
    token = mailed_token(relay, "ada@example.com", "Reset your password")
    digests = list(db.scalars(select(AccountLink.digest)))
    assert len(digests) == 1
    assert token.encode() not in digests[0]
    assert len(digests[0]) == 32


def test_patch_me_changes_the_profile_fields_and_null_clears_one(
    client: TestClient, db: Session
) -> None:
    make_user(db, phone_number="+447700900123")
    access = login(client)["access_token"]

    response = client.patch(
        "/account/me",
        json={"first_name": "Augusta Ada", "phone_number": None},
        headers=bearer(access),
    )

    assert response.status_code == 200
    profile = response.json()
    assert profile["first_name"] == "Augusta Ada"
    assert profile["last_name"] == "Lovelace"
    assert profile["phone_number"] is None
    assert client.get("/account/me", headers=bearer(access)).json() == profile


@pytest.mark.parametrize(
    "body",
    [
        {"phone_number": "0123"},
        {"first_name": "x" * 301},
        {"first_name": "\x00"},
        {"email": "eve@example.com"},
        {"first_name": 7},
    ],
    ids=["phone", "long name", "nul", "email", "number"],
)
def test_patch_me_validates_like_registration(
    client: TestClient, db: Session, body: dict[str, object]
) -> None:
    make_user(db)
    access = login(client)["access_token"]
    response = client.patch("/account/me", json=body, headers=bearer(access))
    assert response.status_code == 422
    me = client.get("/account/me", headers=bearer(access)).json()
    assert (me["email"], me["first_name"]) == ("ada@example.com", "Ada")


def test_patch_me_needs_a_bearer_token(client: TestClient) -> None:
    assert client.patch("/account/me", json={"first_name": "Eve"}).status_code == 401


def test_delete_me_removes_the_account_and_ends_its_tokens(
    client: TestClient, relay: Relay, db: Session
) -> None:
    user = make_user(db)
    forgot(client)
    mailed_token(relay, "ada@example.com", "Reset your password")
    pair = login(client)

    response = client.request(
        "DELETE",
        "/account/me",
        json={"password": DEFAULT_PASSWORD},
        headers=bearer(pair["access_token"]),
    )

    assert response.status_code == 204
    assert client.get("/account/me", headers=bearer(pair["access_token"])).status_code == 401
    refreshed = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 401
    for table, column in (
        (User, User.id),
        (AccountLink, AccountLink.user_id),
        (MailOutbox, MailOutbox.user_id),
        (RefreshToken, RefreshToken.user_id),
    ):
        count = db.scalar(select(func.count()).select_from(table).where(column == user.id))
        assert count == 0, table.__name__
    gone = client.post(
        "/account/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )
    assert gone.status_code == 400


def test_delete_me_with_a_wrong_password_is_a_400_counted_like_a_failed_login(
    settings_env: dict[str, str], db: Session
) -> None:
    settings_env["LOGIN_MAX_FAILURES"] = "2"
    make_user(db)
    with TestClient(_app(settings_env)) as client:
        access = login(client)["access_token"]
        statuses = [
            client.request(
                "DELETE", "/account/me", json={"password": "wrong guess"}, headers=bearer(access)
            ).status_code
            for _ in range(3)
        ]
        assert statuses == [400, 400, 429]
        assert client.get("/account/me", headers=bearer(access)).status_code == 200


def _app(env: dict[str, str]) -> FastAPI:
    return create_app(Settings(**env))  # type: ignore[arg-type]


@pytest.fixture
def verified_required(settings_env: dict[str, str]) -> dict[str, str]:
    settings_env["REQUIRE_VERIFIED_EMAIL"] = "true"
    return settings_env


def test_require_verified_email_refuses_the_right_password_of_an_unverified_account(
    verified_required: dict[str, str], client: TestClient, relay: Relay, db: Session
) -> None:
    make_user(db)
    wrong = client.post("/account/login", json={"email": "ada@example.com", "password": "nope"})
    assert wrong.status_code == 400
    right = client.post(
        "/account/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )
    assert right.status_code == 403
    assert right.json()["type"] == "/problems/email-not-verified"
    grant = client.post(
        "/account/token",
        data={
            "grant_type": "password",
            "username": "ada@example.com",
            "password": DEFAULT_PASSWORD,
        },
    )
    assert grant.status_code == 400
    assert grant.json()["error"] == "invalid_grant"
    assert "verif" in grant.json()["error_description"]

    client.post("/account/verify-email/resend", json={"email": "ada@example.com"})
    token = mailed_token(relay, "ada@example.com", "Verify your email address")
    assert client.post("/account/verify-email", json={"token": token}).status_code == 204
    login(client)


def test_require_verified_email_is_refused_without_mail(settings_env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="REQUIRE_VERIFIED_EMAIL"):
        Settings(**{**settings_env, "MAIL_BACKEND": "disabled", "REQUIRE_VERIFIED_EMAIL": "true"})  # type: ignore[arg-type]


def test_with_mail_disabled_forgot_and_resend_are_404_and_register_mails_nothing(
    settings_env: dict[str, str], db: Session
) -> None:
    env = {**settings_env, "MAIL_BACKEND": "disabled"}
    with TestClient(_app(env)) as client:
        for path in ("/account/forgot-password", "/account/verify-email/resend"):
            response = client.post(path, json={"email": "ada@example.com"})
            assert response.status_code == 404
            assert response.json()["type"] == "/problems/not-found"
        registered = client.post(
            "/account/register", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
        )
        assert registered.status_code == 201
    assert db.scalar(select(func.count()).select_from(MailOutbox)) == 0


@pytest.mark.parametrize("path", ["/account/verify-email", "/account/reset-password"])
def test_the_link_pages_are_static_uncached_and_change_nothing(
    client: TestClient, db: Session, path: str
) -> None:
    make_user(db)
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-store"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    for script in re.findall(r'src="([^"]+)"', response.text):
        assert client.get(script).status_code == 200
    assert db.scalar(select(func.count()).select_from(AccountLink)) == 0
