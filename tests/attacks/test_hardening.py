"""What an attacker found against a running server, each now closed (API.md, "Hardening
rules"): password-change guessing, a login racing a password change, reused user ids,
login CSRF in cookie mode, weak long passwords, IPv6 buckets and unbounded usernames, and
`email` as a required claim. Each test names the finding it closes."""

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import RefreshToken, User
from tests.attacks.conftest import PASSWORD, Target, Victim, enrol, start_target
from tests.attacks.expect import forgery_refused, invalid_token, oauth_error, problem
from tests.attacks.forge import AUDIENCE, ISSUER, claims, hmac_signed
from tests.conftest import SERVE, LiveServer
from tests.factories import bearer, make_user

NEW_PASSWORD = "an entirely different passphrase"
WEAK = "short"


@pytest.fixture(scope="module")
def strict_target(migrated_database_url: str) -> Iterator[Target]:
    """Three failures per account, no IP limit."""
    running = start_target(migrated_database_url, LOGIN_MAX_FAILURES="3")
    yield running
    running.http.close()
    running.server.close()


@pytest.fixture(scope="module")
def ip_limited_target(migrated_database_url: str) -> Iterator[Target]:
    """Five requests a minute per client bucket; uvicorn believes X-Forwarded-For from
    127.0.0.1, so a test can speak for any client address."""
    running = start_target(migrated_database_url, IP_RATE_LIMIT="5/minute")
    yield running
    running.http.close()
    running.server.close()


@pytest.fixture(scope="module")
def cookie_target(migrated_database_url: str) -> Iterator[Target]:
    running = start_target(
        migrated_database_url, TOKEN_COOKIE_MODE="true", TOKEN_COOKIE_SECURE="false"
    )
    yield running
    running.http.close()
    running.server.close()


# The production cost of argon2 (tens of milliseconds), so a login spends as long between
# its password check and its session as it would in production: the race's window.
REAL_HASHING = {"PASSWORD_HASH_MEMORY_KIB": "19456", "PASSWORD_HASH_TIME_COST": "2"}


@pytest.fixture(scope="module")
def race_target(migrated_database_url: str) -> Iterator[Target]:
    running = start_target(migrated_database_url, **REAL_HASHING)
    yield running
    running.http.close()
    running.server.close()


def change(target: Target, victim: Victim, current: str, new: str) -> httpx2.Response:
    return target.http.post(
        "/account/password",
        json={"current_password": current, "new_password": new},
        headers=bearer(victim.access_token),
    )


# Finding 1: POST /account/password had no throttle: one stolen access token allowed
# unlimited silent guesses of the current password.
def test_1_guessing_the_current_password_counts_with_the_logins_and_ends_in_429(
    strict_target: Target, db: Session
) -> None:
    victim = enrol(db, strict_target)

    guesses = [change(strict_target, victim, f"guess number {n}", NEW_PASSWORD) for n in range(4)]

    assert [r.status_code for r in guesses] == [400, 400, 400, 429]
    assert guesses[-1].headers["Retry-After"].isdigit()
    problem(guesses[-1], 429, "too-many-requests")
    # One counter with login: the right password cannot log in either now.
    login = strict_target.http.post(
        "/account/login", json={"email": victim.email, "password": victim.password}
    )
    assert login.status_code == 429


# Finding 1: the policy answered before the current password was checked only for the
# right current password (422 versus 400: an oracle).
def test_1_a_weak_new_password_is_422_whatever_the_current_password(
    target: Target, db: Session
) -> None:
    victim = enrol(db, target)

    right = change(target, victim, victim.password, WEAK)
    wrong = change(target, victim, "not the current password", WEAK)

    assert right.status_code == wrong.status_code == 422
    assert right.json() == wrong.json()


# Finding 1: password changes count against IP_RATE_LIMIT too.
def test_1_password_changes_count_against_the_ip_limit(
    ip_limited_target: Target, db: Session
) -> None:
    victim = enrol(db, ip_limited_target)  # one request of the five

    statuses = [
        change(ip_limited_target, victim, f"guess {n}", NEW_PASSWORD).status_code for n in range(5)
    ]

    assert statuses == [400, 400, 400, 400, 429]


def race_a_password_change(http: httpx2.Client, db: Session, *, rounds: int) -> None:
    """Three loops log in with the old password while the password changes; afterwards no
    session of the old password is alive: every token pair they got is dead."""
    for _ in range(rounds):
        _race_once(http, db)


def _race_once(http: httpx2.Client, db: Session) -> None:
    email = f"racer-{uuid.uuid4().hex[:12]}@example.com"
    old = {"email": email, "password": PASSWORD}
    # Registered through the service, so its hash has the server's (real) cost.
    assert http.post("/account/register", json=old).status_code == 201
    db.rollback()
    user_id = db.scalars(select(User.id).where(User.email == email)).one()
    first = http.post("/account/login", json=old).json()
    done = threading.Event()
    won: list[dict[str, Any]] = []
    unexpected: list[str] = []

    def loop() -> None:
        with httpx2.Client(base_url=http.base_url, timeout=30) as own:
            while not done.is_set():
                response = own.post("/account/login", json=old)
                if response.status_code == 200:
                    won.append(response.json())
                elif response.status_code != 400:
                    unexpected.append(response.text)

    loops = [threading.Thread(target=loop) for _ in range(3)]
    for thread in loops:
        thread.start()
    time.sleep(0.2)
    changed = http.post(
        "/account/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(first["access_token"]),
    )
    time.sleep(0.2)
    done.set()
    for thread in loops:
        thread.join()

    assert changed.status_code == 204, changed.text
    assert unexpected == []
    db.rollback()
    live = db.scalars(
        select(RefreshToken.id).where(
            RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
        )
    ).all()
    assert live == []
    for pair in won:
        assert http.get("/account/me", headers=bearer(pair["access_token"])).status_code == 401
        refreshed = http.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 401


# Finding 2: a login already past its password check when the password changed still
# created a live session.
def test_2_a_login_racing_a_password_change_never_yields_a_live_session(
    race_target: Target, db: Session
) -> None:
    race_a_password_change(race_target.http, db, rounds=5)


# Finding 2, on PostgreSQL with two worker processes (READ COMMITTED, truly concurrent).
@pytest.mark.multi_instance
def test_2_the_race_on_postgresql_with_two_workers(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    server = live_server(
        "--workers", "2", command=SERVE, LOGIN_MAX_FAILURES="100000", **REAL_HASHING
    )
    with httpx2.Client(base_url=server.url, timeout=30) as http:
        race_a_password_change(http, db, rounds=30)


# Finding 3: SQLite reused the id of the highest deleted user, so its access token read
# the newcomer's profile, and a dangling refresh row minted tokens for the newcomer (or
# was a 500 when the id was not reused).
def test_3_a_deleted_users_id_is_never_given_again_and_its_tokens_are_dead(
    target: Target, db: Session
) -> None:
    deleted = enrol(db, target)
    # Deleted behind the service's back; on SQLite without foreign keys (as in the
    # sqlite3 shell) its refresh rows stay, dangling.
    db.execute(delete(User).where(User.id == deleted.id))
    db.commit()

    newcomer = target.http.post(
        "/account/register",
        json={"email": f"new-{uuid.uuid4().hex[:8]}@example.com", "password": NEW_PASSWORD},
    )
    me = target.http.get("/account/me", headers=bearer(deleted.access_token))
    refreshed = target.http.post("/account/refresh", json={"refresh_token": deleted.refresh_token})

    assert newcomer.status_code == 201
    assert newcomer.json()["id"] > deleted.id
    invalid_token(me, "unknown user")
    invalid_token(refreshed, {"unknown user", "unknown refresh token"})


# Finding 3: a refresh row left dangling whose user id is not reused: 401, never a 500.
def test_3_refreshing_a_session_of_a_missing_user_is_401(target: Target, db: Session) -> None:
    victim = enrol(db, target)
    db.execute(delete(User).where(User.id == victim.id))
    db.commit()

    refreshed = target.http.post("/account/refresh", json={"refresh_token": victim.refresh_token})

    invalid_token(refreshed, {"unknown user", "unknown refresh token"})


# Finding 4: in cookie mode a page of another site could post the attacker's credentials
# to /account/token and replace the victim's refresh cookie (login CSRF).
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "https://evil.example"}, id="foreign-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-site"),
        pytest.param({"Origin": "null"}, id="opaque-origin"),
    ],
)
@pytest.mark.parametrize("path", ["/account/token", "/account/login", "/account/refresh"])
def test_4_a_cross_site_request_sets_no_session_cookie(
    cookie_target: Target, db: Session, headers: dict[str, str], path: str
) -> None:
    email = f"attacker-{uuid.uuid4().hex[:8]}@example.com"
    make_user(db, email=email, password=PASSWORD)
    bodies: dict[str, dict[str, Any]] = {
        "/account/token": {
            "data": {"grant_type": "password", "username": email, "password": PASSWORD}
        },
        "/account/login": {"json": {"email": email, "password": PASSWORD}},
        "/account/refresh": {"json": {"refresh_token": "anything at all"}},
    }

    response = cookie_target.http.post(path, headers=headers, **bodies[path])

    problem(response, 403, "cross-site-request", PASSWORD)
    assert "set-cookie" not in response.headers
    db.rollback()
    assert db.scalars(select(RefreshToken.id)).all() == []


# Finding 4: the service's own origin behind a TLS-terminating proxy is its own.
def test_4_the_own_origin_behind_a_tls_proxy_is_not_cross_site(
    cookie_target: Target, db: Session
) -> None:
    email = f"user-{uuid.uuid4().hex[:8]}@example.com"
    make_user(db, email=email, password=PASSWORD)
    body = {"email": email, "password": PASSWORD}
    # uvicorn believes X-Forwarded-Proto from 127.0.0.1, as from a proxy that took TLS.
    proxied = {"X-Forwarded-Proto": "https", "Host": "auth.example.com"}

    own = cookie_target.http.post(
        "/account/login", json=body, headers={**proxied, "Origin": "https://auth.example.com"}
    )
    downgraded = cookie_target.http.post(
        "/account/login", json=body, headers={**proxied, "Origin": "http://auth.example.com"}
    )
    unproxied = cookie_target.http.post(
        "/account/login",
        json=body,
        headers={"Host": "auth.example.com", "Origin": "https://auth.example.com"},
    )
    issuer = cookie_target.http.post("/account/login", json=body, headers={"Origin": ISSUER})

    assert own.status_code == 200, own.text
    assert "refresh_token=" in own.headers["set-cookie"]
    problem(downgraded, 403, "cross-site-request")
    problem(unproxied, 403, "cross-site-request")
    assert issuer.status_code == 200, issuer.text


# Finding 5: the common list barely acts at 15 characters; these registered and logged in.
@pytest.mark.parametrize(
    "password",
    [
        pytest.param(" " * 15, id="spaces"),
        pytest.param("aaaaaaaaaaaaaaa", id="one-letter"),
        pytest.param("123456789012345", id="digit-run"),
        pytest.param("passwordpassword", id="repetition"),
        pytest.param("{email}", id="own-email"),
    ],
)
def test_5_weak_long_passwords_are_refused(target: Target, password: str) -> None:
    email = f"mallory.{uuid.uuid4().hex[:8]}@example.com"
    password = password.format(email=email)

    response = target.http.post("/account/register", json={"email": email, "password": password})

    body = problem(response, 422, "validation-error", password)
    assert body["errors"][0]["loc"] == ["body", "password"]


# Finding 6: IP_RATE_LIMIT counted IPv6 per /128: one /64 held 2^64 buckets.
def test_6_an_ipv6_client_is_counted_by_its_64(ip_limited_target: Target) -> None:
    def from_address(address: str) -> int:
        return ip_limited_target.http.post(
            "/account/refresh",
            json={"refresh_token": "x"},
            headers={"X-Forwarded-For": address},
        ).status_code

    network = f"2001:db8:{uuid.uuid4().int % 0xFFFF:x}:1"
    statuses = [from_address(f"{network}::{n:x}") for n in range(1, 7)]
    # IPv4 clients of a dual-stack socket arrive IPv4-mapped: each is its own bucket.
    mapped = [from_address(f"::ffff:198.51.100.{n}") for n in range(1, 7)]

    assert statuses == [401] * 5 + [429]
    assert mapped == [401] * 6


# Finding 6: a 64 KiB username became a throttle key (and was hashed as a login).
def test_6_an_overlong_username_is_invalid_grant_and_no_throttle_key(
    strict_target: Target,
) -> None:
    username = "a" * 310 + "@example.com"  # 322 characters

    responses = [
        strict_target.http.post(
            "/account/token",
            data={"grant_type": "password", "username": username, "password": PASSWORD},
        )
        for _ in range(5)
    ]
    huge = strict_target.http.post(
        "/account/token",
        data={"grant_type": "password", "username": "b" * 65_000, "password": PASSWORD},
    )
    login = strict_target.http.post(
        "/account/login", json={"email": username, "password": PASSWORD}
    )

    # Past LOGIN_MAX_FAILURES=3 and still no 429: nothing was counted for it.
    for response in [*responses, huge]:
        oauth_error(response, {"invalid_grant"}, username)
    problem(login, 422, "validation-error", username)


# Finding 7: `email` was documented as required but a token without it was accepted.
def test_7_an_access_token_without_email_is_refused(
    target: Target, victim: Victim, db: Session
) -> None:
    header = {"alg": "HS256", "typ": "at+jwt", "kid": victim.kid}
    token = hmac_signed(
        header,
        claims(victim.id, victim.session_id, ISSUER, AUDIENCE, email=None),
        target.secret,
    )

    forgery_refused(target, db, token, "missing claim email")
