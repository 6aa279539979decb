"""Bodies too large to parse, declared or chunked, and bodies small enough but nested to
exhaust a recursive parser. API.md: "A request body over 64 KiB is refused with 413
before it is parsed", chunked bodies included; the token endpoint's 413 is problem+json
too. ASVS 5.0 4.2.1 (message boundaries), 15.2.2 and 2.4.1 (resource exhaustion)."""

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy.orm import Session

from tests.attacks.conftest import Target, Victim, state
from tests.attacks.expect import malformed, too_large

LIMIT = 64 * 1024
ENDPOINTS = [
    pytest.param("/account/login", "application/json", id="login"),
    pytest.param("/account/register", "application/json", id="register"),
    pytest.param("/account/refresh", "application/json", id="refresh"),
    pytest.param("/account/logout", "application/json", id="logout"),
    pytest.param("/account/password", "application/json", id="password"),
    pytest.param("/account/token", "application/x-www-form-urlencoded", id="token-endpoint"),
]


def body_of(victim: Victim, content_type: str, size: int) -> bytes:
    """A body that would otherwise succeed (the victim's own credentials and tokens),
    padded with an extra member to exactly `size` bytes."""
    if content_type == "application/json":
        values = {
            "email": victim.email,
            "password": victim.password,
            "refresh_token": victim.refresh_token,
            "current_password": victim.password,
            "new_password": "a fresh and long passphrase",
        }
        text = json.dumps(values)[:-1] + ', "padding": ""}'
        return text[:-2].encode() + b"x" * (size - len(text)) + b'"}'
    text = f"grant_type=refresh_token&refresh_token={victim.refresh_token}&padding="
    return text.encode() + b"x" * (size - len(text))


def chunks(body: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


# API.md and ASVS 5.0 4.2.1: over 64 KiB is a 413 whatever the framing, Content-Length or
# chunked (RFC 9112 §6.1), before any parser sees the body.
@pytest.mark.parametrize(("path", "content_type"), ENDPOINTS)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_one_byte_over_64_kib_is_a_413_before_it_is_parsed(
    target: Target, victim: Victim, db: Session, path: str, content_type: str, framing: str
) -> None:
    body = body_of(victim, content_type, LIMIT + 1)
    assert len(body) == LIMIT + 1
    before = state(db)

    response = target.http.post(
        path,
        # A generator has no length: httpx sends it chunked, with no Content-Length.
        content=body if framing == "content-length" else chunks(body),
        headers={
            "Content-Type": content_type,
            "Authorization": f"Bearer {victim.access_token}",
        },
    )

    too_large(response)
    if framing == "chunked":
        assert "content-length" not in response.request.headers
    assert state(db) == before


def test_a_declared_terabyte_is_refused_before_a_byte_of_it_is_sent(target: Target) -> None:
    # RFC 9110 §15.5.14: the server may refuse on Content-Length alone, and must not wait.
    address = urlsplit(target.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(
            b"POST /account/login HTTP/1.1\r\nHost: testserver\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n"
        )
        answer = connection.recv(4096)

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"application/problem+json" in answer


# API.md: the limit is "over 64 KiB"; the boundary itself is parsed.
@pytest.mark.parametrize(
    ("path", "content_type"),
    [endpoint for endpoint in ENDPOINTS if endpoint.id != "token-endpoint"],
)
def test_a_body_of_exactly_64_kib_is_parsed_not_refused(
    target: Target, victim: Victim, db: Session, path: str, content_type: str
) -> None:
    # The limit's boundary: 64 KiB is allowed; this body then fails validation (a
    # password over 256 code points, or an unknown member ignored) or succeeds.
    body = body_of(victim, content_type, LIMIT)

    response = target.http.post(
        path,
        content=body,
        headers={
            "Content-Type": content_type,
            "Authorization": f"Bearer {victim.access_token}",
        },
    )

    assert response.status_code != 413, response.text
    assert response.status_code < 500


# RFC 8259 §9 and ASVS 5.0 15.2.2: nesting depth is a resource too.
@pytest.mark.parametrize(
    ("path", "content_type"),
    [endpoint for endpoint in ENDPOINTS if endpoint.id != "token-endpoint"],
)
def test_a_json_body_nested_thousands_deep_is_a_422_not_a_crash(
    target: Target, victim: Victim, db: Session, path: str, content_type: str
) -> None:
    # RFC 8259 §9: a parser may limit nesting; Python's stops with RecursionError, which
    # must become "malformed", never a 500. 20,000 levels are 40 KB, under the limit.
    body = b'{"email": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    before = state(db)

    response = target.http.post(
        path,
        content=body,
        headers={
            "Content-Type": content_type,
            "Authorization": f"Bearer {victim.access_token}",
        },
    )

    malformed(response)
    assert state(db) == before
