"""Two-factor over HTTP: setup, confirmation, login with a TOTP or recovery code, recovery
codes, switching it off, the token endpoint, the admin view and the stored secret."""

import base64
import concurrent.futures
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import jwt
import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.models import RecoveryCode, TotpFactor, User
from tests.conftest import LiveServer
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user

EMAIL = "ada@example.com"


class Clock:
    """The runtime's clock, moved by the test: codes are computed for its time."""

    def __init__(self) -> None:
        # Near the real time (access tokens are checked against it), at the start of a step.
        real = int(datetime.now(UTC).timestamp())
        # Ten minutes behind, so that ticking forward never mints a token valid only later.
        self.now = datetime.fromtimestamp(real - real % 30 - 600, UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int = 30) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(app: FastAPI, client: TestClient) -> Clock:
    clock = Clock()
    app.state.runtime.clock = clock
    return clock


@pytest.fixture
def user(db: Session) -> User:
    # Verified: while mail is enabled, only a verified address may enrol a factor.
    return make_user(db, email=EMAIL, email_verified=True)


def code(secret: str, clock: Clock) -> str:
    return pyotp.TOTP(secret).at(clock.now)


def delete_2fa(client: TestClient, token: str, body: dict[str, Any]) -> httpx2.Response:
    return client.request("DELETE", "/account/2fa", json=body, headers=bearer(token))


def begin(client: TestClient, token: str) -> httpx2.Response:
    return client.post(
        "/account/2fa/totp", json={"password": DEFAULT_PASSWORD}, headers=bearer(token)
    )


def enable(client: TestClient, clock: Clock) -> tuple[str, list[str], dict[str, Any]]:
    """Two-factor on for ada: the secret, the recovery codes and the session that enabled it."""
    pair = login(client)
    secret = begin(client, pair["access_token"]).json()["secret"]
    confirmed = client.post(
        "/account/2fa/totp/confirm",
        json={"code": code(secret, clock)},
        headers=bearer(pair["access_token"]),
    )
    assert confirmed.status_code == 200, confirmed.text
    clock.tick()
    return secret, confirmed.json()["recovery_codes"], pair


def login_with(client: TestClient, **factor: str) -> httpx2.Response:
    return client.post(
        "/account/login", json={"email": EMAIL, "password": DEFAULT_PASSWORD, **factor}
    )


def amr(access_token: str) -> list[str]:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    methods: list[str] = claims["amr"]
    return methods


def test_setup_returns_a_pending_secret_never_cached(
    client: TestClient, user: User, clock: Clock
) -> None:
    pair = login(client)
    response = begin(client, pair["access_token"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert len(base64.b32decode(body["secret"])) == 20
    assert body["otpauth_uri"].startswith("otpauth://totp/JWT%20auth%20API:ada%40example.com?")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    # Pending: the profile says off, and a login needs no code yet.
    assert (
        client.get("/account/me", headers=bearer(pair["access_token"])).json()["two_factor_enabled"]
        is False
    )
    assert login_with(client).status_code == 200


def test_a_password_login_carries_amr_pwd(client: TestClient, user: User) -> None:
    assert amr(login(client)["access_token"]) == ["pwd"]


def test_the_whole_life_of_two_factor(client: TestClient, user: User, clock: Clock) -> None:
    secret, codes, pair = enable(client, clock)
    assert len(codes) == 10
    assert (
        client.get("/account/me", headers=bearer(pair["access_token"])).json()["two_factor_enabled"]
        is True
    )

    required = login_with(client)
    assert required.status_code == 401
    assert required.json()["type"] == "/problems/two-factor-required"
    assert required.headers["WWW-Authenticate"] == 'Bearer realm="http://testserver"'

    with_code = login_with(client, otp=code(secret, clock))
    assert with_code.status_code == 200, with_code.text
    assert amr(with_code.json()["access_token"]) == ["mfa", "otp", "pwd"]
    # A refresh keeps the methods of the login that began the session.
    clock.tick()
    refreshed = client.post(
        "/account/refresh", json={"refresh_token": with_code.json()["refresh_token"]}
    )
    assert amr(refreshed.json()["access_token"]) == ["mfa", "otp", "pwd"]

    with_recovery = login_with(client, recovery_code=codes[0].upper().replace("-", ""))
    assert with_recovery.status_code == 200
    assert amr(with_recovery.json()["access_token"]) == ["mfa", "otp", "pwd"]
    assert login_with(client, recovery_code=codes[0]).status_code == 400

    token = with_code.json()["access_token"]
    wrong = {
        "password": DEFAULT_PASSWORD,
        "code": "000000" if code(secret, clock) != "000000" else "111111",
    }
    wrong_password = {"password": "not the password", "code": code(secret, clock)}
    answers = [delete_2fa(client, token, body) for body in (wrong, wrong_password)]
    assert [a.status_code for a in answers] == [400, 400], answers[0].text
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["detail"] == "invalid credentials"
    off = delete_2fa(client, token, {"password": DEFAULT_PASSWORD, "code": codes[1]})
    assert off.status_code == 204
    assert login_with(client).status_code == 200
    assert amr(login_with(client).json()["access_token"]) == ["pwd"]
    assert (
        client.post(
            "/account/2fa/recovery-codes", json={"code": code(secret, clock)}, headers=bearer(token)
        ).status_code
        == 409
    )


def test_a_code_is_accepted_once(client: TestClient, user: User, clock: Clock) -> None:
    secret, _, _ = enable(client, clock)
    used = code(secret, clock)
    assert login_with(client, otp=used).status_code == 200
    replayed = login_with(client, otp=used)
    assert replayed.status_code == 400
    assert replayed.json()["detail"] == "invalid credentials"
    # An earlier step's code, still within the window, is a replay too.
    clock.tick()
    assert (
        login_with(client, otp=pyotp.TOTP(secret).at(clock.now - timedelta(seconds=60))).status_code
        == 400
    )
    assert login_with(client, otp=code(secret, clock)).status_code == 200


def test_otp_and_recovery_code_together_are_refused(client: TestClient, user: User) -> None:
    response = login_with(client, otp="123456", recovery_code="abcde-fghjk")
    assert response.status_code == 422
    assert "123456" not in response.text


def test_a_code_sent_for_an_account_without_two_factor_is_ignored(
    client: TestClient, user: User
) -> None:
    assert login_with(client, otp="123456").status_code == 200


def test_wrong_codes_are_failed_attempts_and_the_right_password_alone_counts_nothing(
    client: TestClient, user: User, clock: Clock
) -> None:
    secret, _, _ = enable(client, clock)
    # LOGIN_MAX_FAILURES is 5: asking for the code any number of times counts nothing...
    for _ in range(6):
        assert login_with(client).status_code == 401
    # ...and a right code after four wrong ones still logs in, clearing the count.
    for _ in range(4):
        assert login_with(client, otp="abcdef").status_code == 400
    assert login_with(client, otp=code(secret, clock)).status_code == 200
    for _ in range(5):
        response = login_with(client, otp="abcdef")
        assert response.status_code == 400
        assert response.json()["detail"] == "invalid credentials"
    clock.tick()
    throttled = login_with(client, otp=code(secret, clock))
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"].isdigit()


def test_every_wrong_code_anywhere_counts_with_the_logins(
    client: TestClient, user: User, clock: Clock
) -> None:
    secret, _, pair = enable(client, clock)
    token = pair["access_token"]
    for _ in range(2):
        wrong = client.post(
            "/account/2fa/recovery-codes", json={"code": "abcdef"}, headers=bearer(token)
        )
        assert wrong.status_code == 400
        assert wrong.json()["type"] == "/problems/invalid-code"
    for _ in range(2):
        assert (
            delete_2fa(client, token, {"password": DEFAULT_PASSWORD, "code": "x"}).status_code
            == 400
        )
    assert login_with(client, otp="abcdef").status_code == 400
    assert login_with(client, otp=code(secret, clock)).status_code == 429


def test_setup_needs_the_password_and_counts_a_wrong_one(
    client: TestClient, user: User, clock: Clock
) -> None:
    token = login(client)["access_token"]
    wrong = client.post("/account/2fa/totp", json={"password": "nope"}, headers=bearer(token))
    assert wrong.status_code == 400
    for _ in range(4):
        client.post("/account/2fa/totp", json={"password": "nope"}, headers=bearer(token))
    assert login_with(client).status_code == 429


def test_conflicts(client: TestClient, user: User, clock: Clock) -> None:
    token = login(client)["access_token"]
    nothing_pending = client.post(
        "/account/2fa/totp/confirm", json={"code": "123456"}, headers=bearer(token)
    )
    assert nothing_pending.status_code == 409
    assert nothing_pending.json()["type"] == "/problems/conflict"
    off = client.post("/account/2fa/recovery-codes", json={"code": "123456"}, headers=bearer(token))
    assert off.status_code == 409
    _, _, pair = enable(client, clock)
    assert begin(client, pair["access_token"]).status_code == 409


def test_a_new_setup_replaces_the_pending_one(client: TestClient, user: User, clock: Clock) -> None:
    token = login(client)["access_token"]
    first = begin(client, token).json()["secret"]
    second = begin(client, token).json()["secret"]
    assert first != second
    stale = client.post(
        "/account/2fa/totp/confirm", json={"code": code(first, clock)}, headers=bearer(token)
    )
    if code(first, clock) != code(second, clock):
        assert stale.status_code == 400
        assert stale.json()["type"] == "/problems/invalid-code"
    confirmed = client.post(
        "/account/2fa/totp/confirm", json={"code": code(second, clock)}, headers=bearer(token)
    )
    assert confirmed.status_code == 200
    assert confirmed.headers["Cache-Control"] == "no-store"


def test_confirming_ends_every_other_session_but_the_callers(
    client: TestClient, user: User, clock: Clock
) -> None:
    other = login(client)
    _, _, pair = enable(client, clock)
    assert client.get("/account/me", headers=bearer(other["access_token"])).status_code == 401
    assert (
        client.post("/account/refresh", json={"refresh_token": other["refresh_token"]}).status_code
        == 401
    )
    assert client.get("/account/me", headers=bearer(pair["access_token"])).status_code == 200
    refreshed = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    # The session began with a password alone, and keeps saying so.
    assert amr(refreshed.json()["access_token"]) == ["pwd"]


def test_new_recovery_codes_void_the_old_ones(client: TestClient, user: User, clock: Clock) -> None:
    secret, old, pair = enable(client, clock)
    response = client.post(
        "/account/2fa/recovery-codes",
        json={"code": code(secret, clock)},
        headers=bearer(pair["access_token"]),
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = response.json()["recovery_codes"]
    assert len(new) == 10
    assert not set(new) & set(old)
    assert login_with(client, recovery_code=old[0]).status_code == 400
    assert login_with(client, recovery_code=new[0]).status_code == 200


def test_the_token_endpoint_sends_two_factor_accounts_to_login(
    client: TestClient, user: User, clock: Clock
) -> None:
    enable(client, clock)
    form = {"grant_type": "password", "username": EMAIL, "password": DEFAULT_PASSWORD}
    refused = client.post("/account/token", data=form)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert "/account/login" in refused.json()["error_description"]
    wrong = client.post("/account/token", data={**form, "password": "not it"})
    assert wrong.json()["error"] == "invalid_grant"
    assert "/account/login" not in wrong.json()["error_description"]


def test_an_admin_sees_and_switches_two_factor_off(
    client: TestClient, user: User, db: Session, clock: Clock
) -> None:
    make_user(db, email="root@example.com", roles=["admin"])
    enable(client, clock)
    root = bearer(login(client, email="root@example.com")["access_token"])
    assert client.get(f"/admin/users/{user.id}", headers=root).json()["two_factor_enabled"] is True
    patched = client.patch(
        f"/admin/users/{user.id}", json={"two_factor_enabled": False}, headers=root
    )
    assert patched.status_code == 200
    assert patched.json()["two_factor_enabled"] is False
    assert login_with(client).status_code == 200
    assert db.scalar(select(TotpFactor).where(TotpFactor.user_id == user.id)) is None
    assert not db.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)).all()


def test_the_database_holds_no_secret_and_no_recovery_code_in_clear(
    client: TestClient, user: User, db: Session, clock: Clock
) -> None:
    secret, codes, _ = enable(client, clock)
    row = db.execute(
        text("SELECT secret FROM totp_factors WHERE user_id = :id"), {"id": user.id}
    ).one()
    stored = bytes(row[0])
    assert secret.encode() not in stored
    assert base64.b32decode(secret) not in stored
    digests = db.execute(
        text("SELECT digest FROM recovery_codes WHERE user_id = :id"), {"id": user.id}
    ).scalars()
    dump = b"".join(bytes(d) for d in digests)
    for recovery in codes:
        assert recovery.encode() not in dump
        assert recovery.replace("-", "").encode() not in dump


def test_no_secret_or_code_in_an_error_body(client: TestClient, user: User, clock: Clock) -> None:
    secret, codes, pair = enable(client, clock)
    token = pair["access_token"]
    bodies = [
        login_with(client, otp="abcdef").text,
        login_with(client, recovery_code="zzzzz-zzzzz").text,
        delete_2fa(client, token, {"password": DEFAULT_PASSWORD, "code": "zzzzz-zzzzz"}).text,
        client.post(
            "/account/2fa/recovery-codes", json={"code": "987654"}, headers=bearer(token)
        ).text,
        begin(client, token).text,
    ]
    for body in bodies:
        assert secret not in body
        assert "zzzzz" not in body
        assert "987654" not in body
        assert not any(recovery in body for recovery in codes)


def test_recovery_codes_survive_a_key_rotation(
    client: TestClient, user: User, clock: Clock, settings_env: dict[str, str]
) -> None:
    secret, codes, _ = enable(client, clock)
    rotated = create_app(
        Settings(
            **{  # type: ignore[arg-type]
                **settings_env,
                "DATA_ENCRYPTION_KEY": secrets.token_urlsafe(48),
                "DATA_PREVIOUS_ENCRYPTION_KEYS": settings_env["DATA_ENCRYPTION_KEY"],
            }
        )
    )
    with TestClient(rotated, base_url="http://testserver") as after:
        after.app.state.runtime.clock = clock  # type: ignore[attr-defined]
        assert login_with(after, recovery_code=codes[0]).status_code == 200
        assert login_with(after, otp=code(secret, clock)).status_code == 200


def test_of_two_concurrent_logins_with_one_code_exactly_one_wins(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    """RFC 6238 §5.2 across concurrent requests: the step moves by a conditional UPDATE."""
    make_user(db, email=EMAIL, email_verified=True)
    server = live_server()
    with httpx2.Client(base_url=server.url) as client:
        token = login(client)["access_token"]
        secret = client.post(
            "/account/2fa/totp", json={"password": DEFAULT_PASSWORD}, headers=bearer(token)
        ).json()["secret"]
        totp = pyotp.TOTP(secret)
        now = datetime.now(UTC)
        confirmed = client.post(
            "/account/2fa/totp/confirm",
            json={"code": totp.at(now - timedelta(seconds=30))},
            headers=bearer(token),
        )
        assert confirmed.status_code == 200
    for round_ in range(3):
        shared = totp.at(datetime.now(UTC) + timedelta(seconds=30 * (round_ % 2)))
        body = {"email": EMAIL, "password": DEFAULT_PASSWORD, "otp": shared}

        def attempt(request: dict[str, str]) -> int:
            return httpx2.post(f"{server.url}/account/login", json=request, timeout=30).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(attempt, [body] * 4))
        assert sorted(statuses).count(200) <= 1, statuses
        if 200 not in statuses:
            # The step turned between code and request: a later code wins next round.
            continue
        assert statuses.count(200) == 1
        assert all(status == 400 for status in statuses if status != 200)
        return
    pytest.fail("no round won")


def test_an_unverified_address_cannot_enrol_a_factor_while_mail_is_enabled(
    client: TestClient, db: Session
) -> None:
    # Else whoever registered a victim's address first could lock the victim out later.
    make_user(db, email=EMAIL)
    token = login(client, email=EMAIL)["access_token"]

    response = client.post(
        "/account/2fa/totp", json={"password": DEFAULT_PASSWORD}, headers=bearer(token)
    )

    assert response.status_code == 403
    assert response.json()["type"] == "/problems/email-not-verified"
    assert db.scalar(select(TotpFactor)) is None
