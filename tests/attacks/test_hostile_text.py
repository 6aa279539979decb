"""NUL bytes, lone surrogates, invalid UTF-8 and unusual Unicode in every text field, on
whichever database the run uses (CI runs this module on SQLite and on PostgreSQL).

API.md: "Text with NUL bytes or lone surrogates is a 422, never a 500, on SQLite and
PostgreSQL alike"; the token endpoint answers the RFC 6749 §5.2 shape. PostgreSQL refuses
NUL in text and UTF-8 cannot carry a surrogate: either would be a driver error (a 500)
if it got that far. ASVS 5.0 2.2.1 (validate input), 1.1.1 (decode once, canonically) and
16.5.3 (fail securely). Each hostile value is put inside a value that would otherwise
succeed (the victim's own password, refresh token...), and nothing may change."""

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import User
from tests.attacks.conftest import Target, Victim, state
from tests.attacks.expect import malformed, oauth_error

NEW_PASSWORD = "a fresh and long passphrase"
HOSTILE = {
    # RFC 8259 §7 lets JSON escape any code point, NUL and lone surrogates included.
    "nul": "\u0000",
    "high-surrogate": "\ud800",
    "low-surrogate": "\udfff",
}

# Escaped: ruff (rightly) flags letters that look like Latin ones in source text.
CYRILLIC = "\u043f\u0430\u0440\u043e\u043b\u044c \U0001f510 \u043f\u0430\u0440\u043e\u043b\u044c"
FULLWIDTH = "".join(chr(ord(letter) + 0xFEE0) for letter in "fullwidth")

Body = Callable[[Victim], dict[str, Any]]


def login_body(victim: Victim) -> dict[str, Any]:
    return {"email": victim.email, "password": victim.password}


def register_body(victim: Victim) -> dict[str, Any]:
    return {
        "email": f"new-{uuid.uuid4().hex[:8]}@example.com",
        "password": NEW_PASSWORD,
        "first_name": "Grace",
        "last_name": "Hopper",
        "phone_number": "+441234567890",
    }


def refresh_body(victim: Victim) -> dict[str, Any]:
    return {"refresh_token": victim.refresh_token}


def password_body(victim: Victim) -> dict[str, Any]:
    return {"current_password": victim.password, "new_password": NEW_PASSWORD}


FIELDS = [
    ("/account/login", login_body, "email"),
    ("/account/login", login_body, "password"),
    ("/account/register", register_body, "email"),
    ("/account/register", register_body, "password"),
    ("/account/register", register_body, "first_name"),
    ("/account/register", register_body, "last_name"),
    ("/account/register", register_body, "phone_number"),
    ("/account/refresh", refresh_body, "refresh_token"),
    ("/account/logout", refresh_body, "refresh_token"),
    ("/account/password", password_body, "current_password"),
    ("/account/password", password_body, "new_password"),
]


def spiked(value: str, hostile: str) -> str:
    """The value with the hostile text inside it, after its third character."""
    return value[:3] + hostile + value[3:]


# API.md: NUL or a lone surrogate in any text field is a 422, never a 500 (ASVS 5.0 2.2.1,
# 16.5.3); RFC 8259 §7 lets a JSON string escape both.
@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [pytest.param(*field, id=f"{field[0].rsplit('/', 1)[1]}-{field[2]}") for field in FIELDS],
)
def test_nul_or_a_lone_surrogate_in_a_json_field_is_a_422_that_changes_nothing(
    target: Target,
    victim: Victim,
    db: Session,
    path: str,
    body: Body,
    field: str,
    hostile: str,
) -> None:
    values = body(victim)
    original = values[field]
    values[field] = spiked(original, hostile)
    before = state(db)

    response = target.http.post(
        path,
        # ensure_ascii: the JSON text escapes them (\u0000, \ud800), as a client would.
        content=json.dumps(values, ensure_ascii=True),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {victim.access_token}",
        },
    )

    malformed(response, original)
    assert ["body", field] in [error["loc"] for error in response.json()["errors"]]
    assert state(db) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/account/login", login_body, id="login"),
        pytest.param("/account/register", register_body, id="register"),
        pytest.param("/account/refresh", refresh_body, id="refresh"),
        pytest.param("/account/logout", refresh_body, id="logout"),
        pytest.param("/account/password", password_body, id="password"),
    ],
)
@pytest.mark.parametrize(
    "raw",
    [
        # RFC 8259 §8.1: JSON text exchanged between systems MUST be UTF-8.
        pytest.param(b"\xff", id="invalid-byte"),
        # RFC 3629 §3: an overlong encoding of NUL, the classic filter bypass.
        pytest.param(b"\xc0\x80", id="overlong-nul"),
        # RFC 3629 §3: surrogates encoded as UTF-8 (CESU-8) are not UTF-8.
        pytest.param(b"\xed\xa0\x80", id="encoded-surrogate"),
    ],
)
def test_a_json_body_that_is_not_utf_8_is_a_422_that_changes_nothing(
    target: Target, victim: Victim, db: Session, path: str, body: Body, raw: bytes
) -> None:
    values = body(victim)
    field = next(iter(values))
    text = json.dumps(values).encode()
    value = json.dumps(values[field]).encode()
    content = text.replace(value, value[:4] + raw + value[4:], 1)
    before = state(db)

    response = target.http.post(
        path,
        content=content,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {victim.access_token}",
        },
    )

    malformed(response)
    assert state(db) == before


@pytest.mark.parametrize(
    "hostile",
    [
        # RFC 3986 §2.1: a form value is percent-encoded UTF-8; %00 decodes to NUL.
        pytest.param("%00", id="nul"),
        # The UTF-8 bytes of a lone surrogate, which no decoder may turn into one.
        pytest.param("%ED%A0%80", id="encoded-surrogate"),
        pytest.param("%FF", id="invalid-byte"),
    ],
)
@pytest.mark.parametrize("field", ["username", "password", "refresh_token"])
def test_hostile_text_in_a_token_endpoint_field_is_an_oauth_error_that_changes_nothing(
    target: Target, victim: Victim, db: Session, field: str, hostile: str
) -> None:
    # API.md: the token endpoint answers malformed text with 400 invalid_request, or
    # invalid_grant for text that cannot be a credential; RFC 6749 §5.2.
    grant = "refresh_token" if field == "refresh_token" else "password"
    values = {
        "grant_type": grant,
        "username": victim.email,
        "password": victim.password,
        "refresh_token": victim.refresh_token,
    }
    form = "&".join(
        f"{name}={spiked(quote(value, safe=''), hostile) if name == field else quote(value)}"
        for name, value in values.items()
    )
    before = state(db)

    response = target.http.post(
        "/account/token",
        content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    oauth_error(response, {"invalid_request", "invalid_grant"}, victim.refresh_token)
    assert state(db) == before


@pytest.mark.parametrize(
    ("password", "typed"),
    [
        # NIST SP 800-63B §5.1.1.2 and ASVS 5.0 6.2.5 and 6.2.8: any Unicode is a valid
        # password, compared after NFKC, never truncated or case-folded.
        pytest.param(CYRILLIC, CYRILLIC, id="cyrillic-and-emoji"),
        pytest.param(FULLWIDTH + " passphrase", "fullwidth passphrase", id="fullwidth-equals-nfkc"),
        pytest.param(
            "\u202eright-to-left override", "\u202eright-to-left override", id="bidi-override"
        ),
        pytest.param(
            "e\u0301 combining accents here",
            "\u00e9 combining accents here",
            id="combining-vs-composed",
        ),
    ],
)
def test_unicode_passwords_round_trip_through_the_database(
    target: Target, db: Session, password: str, typed: str
) -> None:
    email = f"unicode-{uuid.uuid4().hex[:8]}@example.com"
    registered = target.http.post(
        "/account/register",
        json={"email": email, "password": password, "first_name": "Zoë 🦄 \u202eRTL"},
    )
    assert registered.status_code == 201, registered.text

    logged_in = target.http.post("/account/login", json={"email": email, "password": typed})
    wrong = target.http.post("/account/login", json={"email": email, "password": typed.upper()})

    assert logged_in.status_code == 200, logged_in.text
    assert wrong.status_code == 400
    db.rollback()
    stored = db.scalars(select(User.first_name).where(User.email == email)).one()
    assert stored == "Zoë 🦄 \u202eRTL"
