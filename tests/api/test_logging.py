"""What the service writes to its logs never holds a token."""

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx2
import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import User
from app.observability.audit import Event
from tests.conftest import LiveServer
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user


def test_the_access_log_drops_query_strings_where_a_token_may_hide(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    make_user(db)
    server = live_server()
    with httpx2.Client(base_url=server.url) as client:
        pair = login(client)
        token = pair["access_token"]
        assert client.get(f"/test?access_token={token}").status_code == 401
        assert client.post("/account/refresh", json={"refresh_token": "x"}).status_code == 401
    log = server.stop_and_read_log()

    assert "GET /test HTTP/1.1" in log
    assert token not in log
    assert pair["refresh_token"] not in log


def mailed_token(server: LiveServer, page: str, count: int) -> str:
    """The token of the newest link to `page` the console backend printed, once `count`
    such links are there."""
    pattern = re.compile(rf"/account/{page}#token=([A-Za-z0-9_-]{{43}})")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = pattern.findall(server.read_log())
        if len(found) >= count:
            return str(found[-1])
        time.sleep(0.1)
    raise AssertionError(f"no mailed link to {page}")


def test_a_whole_scenario_logs_every_audit_event_and_no_secret(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    """Every audit event of the contract happens once at least, on a real server; then its
    whole log (access log, audit log, warnings) is searched for every secret it handled.

    ASVS 5.0 16.2.5 and 16.3.1: authentication decisions are logged, credentials are not.
    """
    make_user(db, email="ada@example.com", password=DEFAULT_PASSWORD)
    make_user(db, email="root@example.com", password=DEFAULT_PASSWORD, roles=["admin"])
    make_user(db, email="hopper@example.com", password=DEFAULT_PASSWORD, email_verified=True)
    server = live_server(
        LOGIN_MAX_FAILURES="3", IP_RATE_LIMIT="40/hour", REFRESH_REUSE_GRACE_SECONDS="60"
    )
    secret_key = server.env["TOKEN_SECRET_KEY"]
    new_password = "a brand new passphrase for ada"
    reset_password = "yet another passphrase for ada"
    grace_password = "the admiral's own passphrase"
    guesses = ["a wrong guess at ada's", DEFAULT_PASSWORD.upper()]
    access_tokens: list[str] = []
    refresh_tokens: list[str] = []
    request_ids: set[str] = set()
    two_factor_secrets: list[str] = []

    def keep(response: httpx2.Response) -> httpx2.Response:
        request_ids.add(response.headers["X-Request-ID"])
        response.read()
        if response.status_code == 200 and "access_token" in response.text:
            access_tokens.append(response.json()["access_token"])
            refresh_tokens.append(response.json()["refresh_token"])
        return response

    with httpx2.Client(base_url=server.url, event_hooks={"response": [keep]}) as client:
        client.post(
            "/account/register", json={"email": "grace@example.com", "password": grace_password}
        )
        # The console backend prints the verification mail; its link verifies grace.
        client.post(
            "/account/verify-email", json={"token": mailed_token(server, "verify-email", 1)}
        )
        for guess in guesses:
            client.post("/account/login", json={"email": "ada@example.com", "password": guess})
        first = login(client)
        child = client.post("/account/refresh", json={"refresh_token": first["refresh_token"]})
        # A retry within the grace window, the child unused: the child is replaced.
        client.post("/account/refresh", json={"refresh_token": first["refresh_token"]})
        # Reuse: the child the retry replaced is presented.
        client.post("/account/refresh", json={"refresh_token": child.json()["refresh_token"]})
        client.get("/test", headers=bearer(first["access_token"]))
        second = login(client)
        client.get("/account/me", headers=bearer(second["access_token"]))
        # Administration: a non-admin is refused; an admin disables, enables, re-roles and
        # deletes the account registered above.
        client.get("/admin/users", headers=bearer(second["access_token"]))
        root = bearer(login(client, email="root@example.com")["access_token"])
        grace_id = client.get("/admin/users?email=grace", headers=root).json()["items"][0]["id"]
        for change in ({"is_active": False}, {"is_active": True}, {"roles": ["auditor"]}):
            client.patch(f"/admin/users/{grace_id}", json=change, headers=root)
        client.delete(f"/admin/users/{grace_id}", headers=root)
        third = client.post(
            "/account/token",
            data={
                "grant_type": "password",
                "username": "ada@example.com",
                "password": DEFAULT_PASSWORD,
            },
        ).json()
        client.post(
            "/account/token",
            data={"grant_type": "refresh_token", "refresh_token": third["refresh_token"]},
        )
        sessions = client.get("/account/sessions", headers=bearer(second["access_token"]))
        other = next(s["id"] for s in sessions.json() if not s["current"])
        client.delete(f"/account/sessions/{other}", headers=bearer(second["access_token"]))
        client.post("/account/logout", json={"refresh_token": second["refresh_token"]})
        fourth = login(client)
        client.post(
            "/account/password",
            json={"current_password": "not the one", "new_password": new_password},
            headers=bearer(fourth["access_token"]),
        )
        client.post(
            "/account/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": new_password},
            headers=bearer(fourth["access_token"]),
        )
        # Two-factor: setup, a wrong code, confirmation, a recovery-code login, new codes,
        # switching it off with a recovery code (7 requests against IP_RATE_LIMIT).
        hopper = bearer(login(client, email="hopper@example.com")["access_token"])
        secret = client.post(
            "/account/2fa/totp", json={"password": DEFAULT_PASSWORD}, headers=hopper
        ).json()["secret"]
        totp = pyotp.TOTP(secret)
        client.post("/account/2fa/totp/confirm", json={"code": "abcdef"}, headers=hopper)
        codes = client.post(
            "/account/2fa/totp/confirm", json={"code": totp.now()}, headers=hopper
        ).json()["recovery_codes"]
        client.post(
            "/account/login",
            json={
                "email": "hopper@example.com",
                "password": DEFAULT_PASSWORD,
                "recovery_code": codes[0],
            },
        )
        later = totp.at(datetime.now(UTC) + timedelta(seconds=30))
        new_codes = client.post(
            "/account/2fa/recovery-codes", json={"code": later}, headers=hopper
        ).json()["recovery_codes"]
        client.request(
            "DELETE",
            "/account/2fa",
            json={"password": DEFAULT_PASSWORD, "code": new_codes[0]},
            headers=hopper,
        )
        two_factor_secrets += [secret, *codes, *new_codes]
        fifth = login(client, password=new_password)
        client.post("/account/logout-all", headers=bearer(fifth["access_token"]))
        # Account lifecycle: forgot, reset through the mailed link, profile edit, deletion.
        client.post("/account/forgot-password", json={"email": "ada@example.com"})
        client.post(
            "/account/reset-password",
            json={
                "token": mailed_token(server, "reset-password", 1),
                "new_password": reset_password,
            },
        )
        client.patch("/account/me", json={"first_name": "Augusta"}, headers=root)
        client.request("DELETE", "/account/me", json={"password": DEFAULT_PASSWORD}, headers=root)
        for _ in range(4):
            client.post(
                "/account/login", json={"email": "grace@example.com", "password": "bad guess"}
            )
        # Every request above that takes credentials counts against IP_RATE_LIMIT: refreshes
        # go on until the bucket is full (fewer than 40 requests in all).
        statuses: list[int] = []
        while 429 not in statuses and len(statuses) < 40:
            statuses.append(
                client.post("/account/refresh", json={"refresh_token": "x"}).status_code
            )
        assert statuses[-1] == 429
    hashes = list(db.scalars(select(User.password_hash)))
    log = server.stop_and_read_log()

    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    events = [line for line in lines if line["logger"] == "app.audit"]
    assert {event["event"] for event in events} >= {event.value for event in Event}
    assert {event["request_id"] for event in events} <= request_ids
    assert all(event["ip"] == "127.0.0.1" for event in events)
    # grace was deleted by the admin, and the admin deleted its own account.
    assert len(hashes) == 2
    secrets = {
        "the HMAC key": secret_key,
        **{
            f"password {n}": p
            for n, p in enumerate(
                [DEFAULT_PASSWORD, new_password, reset_password, grace_password, *guesses]
            )
        },
        **{f"stored hash {n}": h for n, h in enumerate(hashes)},
        **{f"access token {n}": t for n, t in enumerate(access_tokens)},
        **{f"access token signature {n}": t.rsplit(".", 1)[1] for n, t in enumerate(access_tokens)},
        **{f"refresh token {n}": t for n, t in enumerate(refresh_tokens)},
        **{f"two-factor secret or code {n}": c for n, c in enumerate(two_factor_secrets)},
    }
    assert len(two_factor_secrets) == 21
    assert len(access_tokens) == 11
    for name, secret in secrets.items():
        assert secret not in log, f"{name} is in the log"
