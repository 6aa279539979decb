"""How a token travels: RFC 6750 §2 allows one method per request, the service reads the
Authorization header only (RFC 9700 §4.3.2: never a query string), and ambiguity is an
`invalid_request`. Every attack carries the victim's genuine, live access token to POST
/account/logout-all, so a server that picked the "right" one would end the sessions."""

import base64

import pytest
from sqlalchemy.orm import Session

from app.api.deps import MALFORMED_BEARER
from tests.attacks.conftest import Target, Victim, state
from tests.attacks.expect import invalid_request, invalid_token, no_credentials

Headers = list[tuple[str, str]]


@pytest.mark.parametrize(
    "headers",
    [
        # RFC 6750 §3.1 invalid_request: "uses more than one method for including an
        # access token"; RFC 9110 §5.3: Authorization is no list, two are ambiguous.
        pytest.param(
            [("Authorization", "Bearer {token}"), ("Authorization", "Bearer {token}")],
            id="the-same-token-twice",
        ),
        pytest.param(
            [("Authorization", "Bearer {token}"), ("Authorization", "Bearer forged")],
            id="genuine-then-forged",
        ),
        pytest.param(
            [("Authorization", "Bearer forged"), ("Authorization", "Bearer {token}")],
            id="forged-then-genuine",
        ),
        pytest.param(
            [("authorization", "Bearer {token}"), ("AUTHORIZATION", "Bearer {token}")],
            id="names-in-other-cases",
        ),
        pytest.param(
            [("Authorization", "Bearer {token}"), ("Authorization", "Basic dXNlcjpwYXNz")],
            id="bearer-and-basic",
        ),
    ],
)
def test_two_authorization_headers_are_an_invalid_request(
    target: Target, victim: Victim, db: Session, headers: Headers
) -> None:
    before = state(db)
    sent = [(name, value.format(token=victim.access_token)) for name, value in headers]

    response = target.http.post("/account/logout-all", headers=sent)

    invalid_request(response, victim.access_token)
    assert state(db) == before


@pytest.mark.parametrize(
    "query",
    [
        # RFC 6750 §2.3 and RFC 9700 §4.3.2: a query-string token leaks into logs and the
        # Referer header; together with a header it is an invalid_request.
        pytest.param("{token}", id="the-same-token"),
        pytest.param("forged", id="another-value"),
        pytest.param("", id="empty-value"),
    ],
)
def test_a_header_and_a_query_string_token_together_are_an_invalid_request(
    target: Target, victim: Victim, db: Session, query: str
) -> None:
    before = state(db)

    response = target.http.post(
        "/account/logout-all",
        params={"access_token": query.format(token=victim.access_token)},
        headers={"Authorization": f"Bearer {victim.access_token}"},
    )

    invalid_request(response, victim.access_token)
    assert state(db) == before


def test_a_genuine_token_in_the_query_string_alone_is_never_read(
    target: Target, victim: Victim, db: Session
) -> None:
    # RFC 9700 §4.3.2 ("access tokens ... MUST NOT be passed in the query"): no credentials.
    before = state(db)

    response = target.http.post("/account/logout-all", params={"access_token": victim.access_token})

    no_credentials(response, victim.access_token)
    assert state(db) == before


@pytest.mark.parametrize(
    ("headers", "form"),
    [
        # RFC 6750 §2.2: the form-encoded body method is optional; the service does not
        # read it, so a token there is no credential (and CSRF-able bodies carry none).
        pytest.param({}, {"access_token": "{token}"}, id="form-body-parameter"),
        # API.md: the access token is never a cookie (no ambient credential, no CSRF).
        pytest.param({"Cookie": "access_token={token}"}, None, id="cookie"),
        pytest.param({"X-Access-Token": "{token}"}, None, id="custom-header"),
        # RFC 7235 §2.1: schemes other than Bearer carry no bearer token.
        pytest.param({"Authorization": "Token {token}"}, None, id="token-scheme"),
        pytest.param({"Authorization": "JWT {token}"}, None, id="jwt-scheme"),
        pytest.param({"Authorization": "{token}"}, None, id="no-scheme"),
    ],
)
def test_a_genuine_token_sent_any_other_way_is_no_credential(
    target: Target,
    victim: Victim,
    db: Session,
    headers: dict[str, str],
    form: dict[str, str] | None,
) -> None:
    before = state(db)
    token = victim.access_token

    response = target.http.post(
        "/account/logout-all",
        headers={name: value.format(token=token) for name, value in headers.items()},
        data={name: value.format(token=token) for name, value in form.items()} if form else None,
    )

    no_credentials(response, token)
    assert state(db) == before


def test_the_victims_password_as_basic_credentials_is_no_credential(
    target: Target, victim: Victim, db: Session
) -> None:
    # RFC 7617: the service takes no Basic credentials on its protected routes.
    before = state(db)
    basic = base64.b64encode(f"{victim.email}:{victim.password}".encode()).decode()

    response = target.http.post("/account/logout-all", headers={"Authorization": f"Basic {basic}"})

    no_credentials(response, basic)
    assert state(db) == before


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        # API.md: "`Bearer` with no token is a 401 with error="invalid_token"".
        pytest.param("Bearer", "missing token", id="scheme-alone"),
        # RFC 9110 §11.1: the scheme is case-insensitive, so this is Bearer with no token.
        pytest.param("BEARER", "missing token", id="scheme-alone-upper-case"),
        # RFC 6750 §2.1: b64token is one token; anything after it makes another.
        pytest.param("Bearer {token} extra", "malformed token", id="token-then-more"),
        pytest.param("Bearer {token},{token}", "malformed token", id="two-tokens-one-header"),
        pytest.param("Bearer Bearer {token}", "malformed token", id="scheme-twice"),
        # RFC 6750 §2.1: only spaces separate the scheme from the token; the description
        # says so rather than answering as if no credentials had been sent.
        pytest.param("Bearer,{token}", MALFORMED_BEARER, id="comma-after-scheme"),
        pytest.param("Bearer\t{token}", MALFORMED_BEARER, id="tab-after-scheme"),
    ],
)
def test_a_bearer_header_without_exactly_one_token_is_an_invalid_token(
    target: Target, victim: Victim, db: Session, authorization: str, reason: str
) -> None:
    before = state(db)

    response = target.http.post(
        "/account/logout-all",
        headers={"Authorization": authorization.format(token=victim.access_token)},
    )

    invalid_token(response, reason, victim.access_token)
    assert state(db) == before
