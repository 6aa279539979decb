"""Replaying tokens after the session they belong to has ended, replaying spent refresh
tokens, reaching into another user's session, and racing a refresh against a logout.

RFC 9700 §4.14.2 (refresh token rotation: a replayed token revokes the family), RFC 7009
§2.2, ASVS 5.0 7.4.1 (logout ends the session), 7.4.3 (password change ends the others),
7.5.2, 8.2.2 (no access to another user's objects), 10.4.5, 15.4.2 (no TOCTOU)."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
from sqlalchemy.orm import Session

from tests.attacks.conftest import TIMEOUT_SECONDS, Target, Victim, enrol, family, state
from tests.attacks.expect import invalid_token, oauth_error, problem

NEW_PASSWORD = "a fresh and long passphrase"
REVOKED = "refresh token revoked"
REUSED = "refresh token reuse detected; the session has been revoked"
SESSION_ENDED = "session ended"


def bearer(victim: Victim) -> dict[str, str]:
    return {"Authorization": f"Bearer {victim.access_token}"}


def logout(target: Target, victim: Victim) -> None:
    response = target.http.post("/account/logout", json={"refresh_token": victim.refresh_token})
    assert response.status_code == 204


def logout_all(target: Target, victim: Victim) -> None:
    assert target.http.post("/account/logout-all", headers=bearer(victim)).status_code == 204


def change_password(target: Target, victim: Victim) -> None:
    response = target.http.post(
        "/account/password",
        json={"current_password": victim.password, "new_password": NEW_PASSWORD},
        headers=bearer(victim),
    )
    assert response.status_code == 204, response.text


def delete_session(target: Target, victim: Victim) -> None:
    response = target.http.delete(f"/account/sessions/{victim.session_id}", headers=bearer(victim))
    assert response.status_code == 204, response.text


Ending = Callable[[Target, Victim], None]
ENDINGS = [
    # ASVS 5.0 7.4.1: logout terminates the session.
    pytest.param(logout, id="after-logout"),
    # ASVS 5.0 7.5.2: the user terminates all sessions.
    pytest.param(logout_all, id="after-logout-all"),
    # ASVS 5.0 7.4.3: a password change terminates the other sessions (here: all).
    pytest.param(change_password, id="after-password-change"),
    # ASVS 5.0 7.5.2: the user terminates one session from the list.
    pytest.param(delete_session, id="after-session-delete"),
]


@pytest.mark.parametrize("end", ENDINGS)
def test_a_refresh_token_replayed_after_its_session_ended_is_refused(
    target: Target, victim: Victim, db: Session, end: Ending
) -> None:
    end(target, victim)
    before = state(db)

    response = target.http.post("/account/refresh", json={"refresh_token": victim.refresh_token})

    invalid_token(response, REVOKED, victim.refresh_token)
    assert state(db) == before, "no child issued, nothing un-revoked"


@pytest.mark.parametrize("end", ENDINGS)
def test_an_access_token_replayed_after_its_session_ended_is_refused_at_once(
    target: Target, victim: Victim, db: Session, end: Ending
) -> None:
    # API.md: ending a session ends its live access tokens at once (the `sid` check).
    end(target, victim)

    response = target.http.get("/account/me", headers=bearer(victim))

    invalid_token(response, SESSION_ENDED, victim.access_token)


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param("refresh", id="replayed-at-refresh"),
        pytest.param("token", id="replayed-at-the-token-endpoint"),
        # API.md: "Logout with a spent token of a live family is reuse too".
        pytest.param("logout", id="replayed-at-logout"),
    ],
)
def test_a_spent_refresh_token_replayed_revokes_its_whole_family(
    target: Target, victim: Victim, db: Session, endpoint: str
) -> None:
    # RFC 9700 §4.14.2: the legitimate client rotated; the replay is the attacker's (or
    # the other way round), so every token of the family ends, the newest included.
    rotated = target.http.post("/account/refresh", json={"refresh_token": victim.refresh_token})
    assert rotated.status_code == 200
    child = rotated.json()

    if endpoint == "refresh":
        replay = target.http.post("/account/refresh", json={"refresh_token": victim.refresh_token})
        invalid_token(replay, REUSED, victim.refresh_token)
    elif endpoint == "token":
        replay = target.http.post(
            "/account/token",
            data={"grant_type": "refresh_token", "refresh_token": victim.refresh_token},
        )
        oauth_error(replay, {"invalid_grant"}, victim.refresh_token)
    else:
        replay = target.http.post("/account/logout", json={"refresh_token": victim.refresh_token})
        assert replay.status_code == 204

    # The revocation outlived the error answer: committed although the request failed.
    assert all(revoked is not None for _, revoked in family(db, victim.session_id))
    after = target.http.post("/account/refresh", json={"refresh_token": child["refresh_token"]})
    invalid_token(after, REVOKED, child["refresh_token"])
    protected = target.http.get(
        "/account/me", headers={"Authorization": f"Bearer {child['access_token']}"}
    )
    invalid_token(protected, SESSION_ENDED, child["access_token"])


def test_a_replay_ends_only_that_family(target: Target, db: Session) -> None:
    # RFC 9700 §4.14.2 revokes "the active refresh token" of that grant: the user's
    # other sessions (another device) live on.
    victim = enrol(db, target)
    other = target.http.post(
        "/account/login", json={"email": victim.email, "password": victim.password}
    ).json()
    target.http.post("/account/refresh", json={"refresh_token": victim.refresh_token})

    target.http.post("/account/refresh", json={"refresh_token": victim.refresh_token})

    still = target.http.post("/account/refresh", json={"refresh_token": other["refresh_token"]})
    assert still.status_code == 200, still.text


def test_another_users_session_cannot_be_ended(target: Target, db: Session) -> None:
    # ASVS 5.0 8.2.2 (IDOR): the session id is known (it is the sid claim) but not the
    # caller's; the answer is the same 404 as for an id that does not exist.
    attacker = enrol(db, target)
    victim = enrol(db, target)
    before = state(db)

    response = target.http.delete(
        f"/account/sessions/{victim.session_id}", headers=bearer(attacker)
    )

    problem(response, 404, "not-found")
    assert state(db) == before


def test_another_users_refresh_token_after_password_change_stays_dead(
    target: Target, db: Session
) -> None:
    # ASVS 5.0 7.4.3: a thief who kept the refresh token across the victim's password
    # change cannot mint a new session from it, nor log in with the old password.
    victim = enrol(db, target)
    change_password(target, victim)

    replay = target.http.post("/account/refresh", json={"refresh_token": victim.refresh_token})
    old_password = target.http.post(
        "/account/login", json={"email": victim.email, "password": victim.password}
    )

    invalid_token(replay, REVOKED, victim.refresh_token)
    problem(old_password, 400, "invalid-credentials", victim.password)


RACERS = 6


# Many rounds: on PostgreSQL two revocations of one family that locked its rows in
# different orders deadlocked in a few rounds in a hundred, once a connection's statements
# were prepared (a generic plan scans in another order).
@pytest.mark.parametrize("round_", range(20), ids=lambda n: f"round-{n + 1}")
def test_a_refresh_racing_a_logout_never_keeps_the_session_alive(
    target: Target, db: Session, round_: int
) -> None:
    """Refreshes and logouts of one token at one instant, on separate connections.

    Whatever the order: the family ends up revoked, every refresh that won has tokens that
    no longer work, and no request gets a 500 or a 503 (a deadlock). ASVS 5.0 15.4.2
    (check and act atomically); the deterministic form of the refresh-against-revocation
    race is tests/services/test_session_races.py."""
    victim = enrol(db, target)
    barrier = threading.Barrier(RACERS, timeout=TIMEOUT_SECONDS)

    def racer(index: int) -> httpx2.Response:
        with httpx2.Client(base_url=target.url, timeout=TIMEOUT_SECONDS) as client:
            assert client.get("/health").status_code == 200
            barrier.wait()
            path = "/account/refresh" if index % 2 else "/account/logout"
            return client.post(path, json={"refresh_token": victim.refresh_token})

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        responses = list(pool.map(racer, range(RACERS)))

    refreshes = [r for r in responses if r.request.url.path == "/account/refresh"]
    logouts = [r for r in responses if r.request.url.path == "/account/logout"]
    assert all(r.status_code == 204 for r in logouts), [r.text for r in logouts]
    assert all(r.status_code in (200, 401) for r in refreshes), [r.text for r in refreshes]
    assert sum(r.status_code == 200 for r in refreshes) <= 1
    rows = family(db, victim.session_id)
    assert all(revoked is not None for _, revoked in rows), rows
    for winner in (r.json() for r in refreshes if r.status_code == 200):
        again = target.http.post(
            "/account/refresh", json={"refresh_token": winner["refresh_token"]}
        )
        invalid_token(again, REVOKED, winner["refresh_token"])
        me = target.http.get(
            "/account/me", headers={"Authorization": f"Bearer {winner['access_token']}"}
        )
        invalid_token(me, SESSION_ENDED, winner["access_token"])
