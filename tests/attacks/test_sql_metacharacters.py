"""SQL metacharacters in emails, passwords, names, tokens and path parameters. Every query
is parameterised (SQLAlchemy), so each is plain data: it either fails as the plain value
it is, or is stored and compared exactly. ASVS 5.0 1.2.4; OWASP WSTG-INPV-05."""

import uuid
from urllib.parse import quote

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import User
from tests.attacks.conftest import Target, Victim, family, state
from tests.attacks.expect import invalid_token, malformed, oauth_error, problem

ALWAYS_TRUE = "' OR '1'='1"


@pytest.mark.parametrize(
    "password",
    [
        # ASVS 5.0 1.2.4, OWASP WSTG-INPV-05: the classic authentication bypasses.
        pytest.param(ALWAYS_TRUE, id="always-true"),
        pytest.param("' OR 1=1 --", id="always-true-comment"),
        pytest.param("x' OR 'x'='x'; --", id="always-true-stacked"),
        pytest.param("') OR ('1'='1", id="always-true-parenthesised"),
        pytest.param("%", id="like-wildcard"),
    ],
)
def test_an_injection_as_the_password_is_a_wrong_password(
    target: Target, victim: Victim, db: Session, password: str
) -> None:
    before = state(db)

    response = target.http.post(
        "/account/login", json={"email": victim.email, "password": password}
    )

    problem(response, 400, "invalid-credentials", victim.password)
    assert response.json()["detail"] == "invalid credentials"
    assert state(db) == before


@pytest.mark.parametrize(
    "email",
    [
        # RFC 5322 §3.2.3: ' and % are atext, so these are syntactically valid addresses.
        pytest.param("admin'--@example.com", id="quote-comment"),
        pytest.param("'or'1'='1@example.com", id="quote-always-true"),
        pytest.param("%@example.com", id="like-wildcard-percent"),
        pytest.param("_@example.com", id="like-wildcard-underscore"),
    ],
)
def test_an_injection_in_a_valid_email_is_an_unknown_account(
    target: Target, victim: Victim, db: Session, email: str
) -> None:
    before = state(db)

    login = target.http.post("/account/login", json={"email": email, "password": victim.password})
    token = target.http.post(
        "/account/token",
        data={"grant_type": "password", "username": email, "password": victim.password},
    )

    problem(login, 400, "invalid-credentials", victim.password)
    oauth_error(token, {"invalid_grant"}, victim.password)
    assert state(db) == before


@pytest.mark.parametrize(
    "email",
    [
        # RFC 5322 §3.2.3: spaces, parentheses and ; are no atext, so these are no address.
        pytest.param("x' OR 1=1 --@example.com", id="spaces"),
        pytest.param("x'); DROP TABLE users;--@example.com", id="drop-table"),
    ],
)
def test_an_injection_that_is_no_email_is_a_422(
    target: Target, victim: Victim, db: Session, email: str
) -> None:
    before = state(db)

    response = target.http.post("/account/login", json={"email": email, "password": "x"})

    malformed(response, email)
    assert state(db) == before


def test_an_account_whose_every_field_is_an_injection_is_stored_as_plain_data(
    target: Target, db: Session
) -> None:
    # Little Bobby Tables (xkcd 327): registered, stored exactly, and logs in as himself.
    email = f"o'reilly-{uuid.uuid4().hex[:6]}@example.com"
    password = "Robert'); DROP TABLE users;--"
    registered = target.http.post(
        "/account/register",
        json={
            "email": email,
            "password": password,
            "first_name": "Robert'); DROP TABLE users;--",
            "last_name": '" OR ""="',
        },
    )

    logged_in = target.http.post("/account/login", json={"email": email, "password": password})

    assert registered.status_code == 201, registered.text
    assert logged_in.status_code == 200, logged_in.text
    db.rollback()
    stored = db.execute(select(User.first_name, User.last_name).where(User.email == email)).one()
    assert tuple(stored) == ("Robert'); DROP TABLE users;--", '" OR ""="')


@pytest.mark.parametrize(
    "token",
    [
        # ASVS 5.0 1.2.4: the token's text never reaches SQL, only its digest.
        pytest.param(ALWAYS_TRUE, id="always-true"),
        pytest.param("' OR spent_at IS NULL --", id="always-true-on-the-column"),
        pytest.param("'; UPDATE refresh_tokens SET revoked_at = NULL; --", id="stacked-update"),
        pytest.param("%", id="like-wildcard"),
    ],
)
def test_an_injection_as_a_refresh_token_is_unknown_and_changes_nothing(
    target: Target, victim: Victim, db: Session, token: str
) -> None:
    # A refresh token is looked up by its SHA-256 digest: no text of it reaches SQL.
    before = state(db)

    refreshed = target.http.post("/account/refresh", json={"refresh_token": token})
    logged_out = target.http.post("/account/logout", json={"refresh_token": token})

    invalid_token(refreshed, "unknown refresh token")
    assert logged_out.status_code == 204
    assert state(db) == before
    assert family(db, victim.session_id) == [(None, None)]


@pytest.mark.parametrize(
    "session_id",
    [
        # ASVS 5.0 1.2.4 and 8.2.2: a path parameter is parsed as a UUID, then bound.
        pytest.param("1' OR '1'='1", id="always-true"),
        pytest.param("* ", id="wildcard"),
        pytest.param("00000000-0000-0000-0000-000000000000' OR ''='", id="uuid-then-injection"),
    ],
)
def test_an_injection_as_a_session_id_is_a_404_and_ends_nothing(
    target: Target, victim: Victim, db: Session, session_id: str
) -> None:
    # API.md: "A session id that is malformed or not the caller's is a 404".
    before = state(db)

    response = target.http.delete(
        f"/account/sessions/{quote(session_id, safe='')}",
        headers={"Authorization": f"Bearer {victim.access_token}"},
    )

    problem(response, 404, "not-found")
    assert state(db) == before
