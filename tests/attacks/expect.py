"""What the contract (API.md) says an attacked endpoint answers: status, body shape, and the
RFC 6750 challenge where it defines one. None of them may echo what the attacker sent."""

from typing import Any

import httpx2
from sqlalchemy.orm import Session

from tests.attacks.conftest import Target, state
from tests.attacks.forge import ISSUER

PROBLEM_JSON = "application/problem+json"
BARE_CHALLENGE = f'Bearer realm="{ISSUER}"'
INVALID_REQUEST_CHALLENGE = f'{BARE_CHALLENGE}, error="invalid_request"'


def problem(response: httpx2.Response, status: int, kind: str, *sent: str) -> dict[str, Any]:
    """An RFC 9457 problem of this status and type that repeats none of `sent`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"/problems/{kind}"
    assert {"title", "detail"} <= body.keys()
    not_echoed(response, *sent)
    return body


def not_echoed(response: httpx2.Response, *sent: str) -> None:
    # Fragments too short to be telling (an empty signature, a NUL) are skipped.
    for value in (value for value in sent if len(value) >= 8):
        assert value not in response.text
        assert all(value not in header for header in response.headers.values())


def invalid_token(response: httpx2.Response, reason: str | set[str], *sent: str) -> None:
    """401 with `error="invalid_token"` and a description naming the failed check (RFC
    6750 §3.1); `reason` may list the descriptions an attack can equally deserve."""
    reasons = {reason} if isinstance(reason, str) else reason
    body = problem(response, 401, "invalid-token", *sent)
    assert body["detail"] in reasons, body["detail"]
    assert response.headers["WWW-Authenticate"] == (
        f'{BARE_CHALLENGE}, error="invalid_token", error_description="{body["detail"]}"'
    )


def no_credentials(response: httpx2.Response, *sent: str) -> None:
    """401 with a bare challenge: the request carried no bearer credentials at all."""
    problem(response, 401, "authentication-required", *sent)
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE


def invalid_request(response: httpx2.Response, *sent: str) -> None:
    """400 `invalid_request`: more than one way of sending a token (RFC 6750 §3.1)."""
    problem(response, 400, "invalid-request", *sent)
    assert response.headers["WWW-Authenticate"] == INVALID_REQUEST_CHALLENGE


def oauth_error(response: httpx2.Response, errors: set[str], *sent: str) -> None:
    """The token endpoint's RFC 6749 §5.2 error: 400, a JSON `error` code, never cached."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] in errors, response.text
    assert response.headers["Cache-Control"] == "no-store"
    not_echoed(response, *sent)


def malformed(response: httpx2.Response, *sent: str) -> None:
    """422 with the errors' locations and messages, and none of the submitted values."""
    body = problem(response, 422, "validation-error", *sent)
    assert isinstance(body["errors"], list)
    assert all("input" not in error for error in body["errors"])


def too_large(response: httpx2.Response) -> None:
    problem(response, 413, "request-too-large")


def forgery_refused(target: Target, db: Session, token: str, reason: str | set[str]) -> None:
    """A forged token sent to logout-all, which would end every session of its subject:
    401 `invalid_token` naming the check, and not one row changed."""
    before = state(db)

    # Bytes: HTTP field values may carry obs-text (RFC 9110 §5.5), which httpx would refuse.
    authorization = f"Bearer {token}".encode("latin-1")

    response = target.http.post("/account/logout-all", headers={b"Authorization": authorization})

    invalid_token(response, reason, token)
    assert state(db) == before
