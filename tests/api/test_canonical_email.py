"""API.md: emails are compared in one canonical form, the domain in its Unicode form."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.schemas import canonical_email
from tests.factories import DEFAULT_PASSWORD, make_user

UNICODE = "josé@exämple.de"
PUNYCODE = "josé@xn--exmple-cua.de"


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        pytest.param(PUNYCODE, UNICODE, id="idna-domain-decoded"),
        pytest.param("JOSÉ@XN--EXMPLE-CUA.DE", UNICODE, id="upper-case-idna"),
        pytest.param("  Ada@Example.COM ", "ada@example.com", id="trimmed-lower-case"),
        pytest.param(
            "ada@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",  # full-width letters
            "ada@example.com",
            id="fullwidth-nfkc",
        ),
        pytest.param("ada@xn--zz.de", "ada@xn--zz.de", id="invalid-idna-left-alone"),
    ],
)
def test_the_canonical_form_decodes_an_idna_domain(given: str, canonical: str) -> None:
    assert canonical_email(given) == canonical


def test_an_address_registered_in_unicode_is_taken_in_punycode(client: TestClient) -> None:
    first = client.post("/account/register", json={"email": UNICODE, "password": DEFAULT_PASSWORD})
    second = client.post(
        "/account/register", json={"email": PUNYCODE, "password": DEFAULT_PASSWORD}
    )

    assert first.status_code == 201, first.text
    assert first.json()["email"] == UNICODE
    assert second.status_code == 409


@pytest.mark.parametrize("email", [UNICODE, PUNYCODE])
def test_login_accepts_the_domain_in_either_form(
    client: TestClient, db: Session, email: str
) -> None:
    make_user(db, email=UNICODE)

    login = client.post("/account/login", json={"email": email, "password": DEFAULT_PASSWORD})
    token = client.post(
        "/account/token",
        data={"grant_type": "password", "username": email, "password": DEFAULT_PASSWORD},
    )

    assert login.status_code == 200, login.text
    assert token.status_code == 200, token.text
