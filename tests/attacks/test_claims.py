"""Correctly signed tokens that must still be refused: out of their time, of another type,
for another audience, missing a claim, with a claim of the wrong JSON type. They are
signed with the server's real secret (the test started the server), so each refusal is
the claim check's alone, as it would be for a token the service once issued itself.

And the two kinds of token confused: a refresh token offered as an access token, and the
reverse, at every endpoint that takes one (RFC 8725 §2.8 and §3.12, ASVS 5.0 9.2.2)."""

import json
import time
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.attacks.conftest import Target, Victim, family, state
from tests.attacks.expect import forgery_refused, invalid_token, oauth_error
from tests.attacks.forge import AUDIENCE, ISSUER, claims, hmac_signed

NOW = "now"  # placeholders, resolved when the test runs rather than at collection


def signed(target: Target, victim: Victim, *, typ: Any = "at+jwt", **overrides: Any) -> str:
    header: dict[str, Any] = {"alg": "HS256", "typ": typ, "kid": victim.kid}
    if typ is None:
        del header["typ"]
    now = int(time.time())
    resolved = {
        name: now + value[1] if isinstance(value, tuple) and value[0] == NOW else value
        for name, value in overrides.items()
    }
    return hmac_signed(
        header, claims(victim.id, victim.session_id, ISSUER, AUDIENCE, **resolved), target.secret
    )


# Time, with zero leeway: the article's ClockSkew = TimeSpan.Zero, TOKEN_LEEWAY_SECONDS=0.
# RFC 7519 §4.1.4-4.1.6, RFC 8725 §3.8, ASVS 5.0 9.2.1.


@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [
        # RFC 7519 §4.1.4: "on or after" exp the token MUST NOT be accepted.
        pytest.param("exp", (NOW, 0), "token expired", id="exp-now"),
        pytest.param("exp", (NOW, -1), "token expired", id="exp-one-second-ago"),
        pytest.param("exp", (NOW, -86_400), "token expired", id="exp-a-day-ago"),
        pytest.param("exp", 0, "token expired", id="exp-the-epoch"),
        pytest.param("exp", -1, "token expired", id="exp-before-the-epoch"),
        # RFC 7519 §4.1.5: not before nbf, with no leeway.
        pytest.param("nbf", (NOW, 5), "token not yet valid", id="nbf-in-five-seconds"),
        pytest.param("nbf", (NOW, 86_400), "token not yet valid", id="nbf-tomorrow"),
        # RFC 7519 §4.1.6: a token issued in the future was not issued by a sane clock.
        pytest.param("iat", (NOW, 5), "token not yet valid", id="iat-in-five-seconds"),
        pytest.param("iat", (NOW, 365 * 86_400), "token not yet valid", id="iat-next-year"),
    ],
)
def test_a_token_outside_its_validity_is_refused_at_zero_leeway(
    target: Target, victim: Victim, db: Session, claim: str, value: Any, reason: str
) -> None:
    forgery_refused(target, db, signed(target, victim, **{claim: value}), reason)


@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [
        # RFC 7519 §2: NumericDate is a JSON number; a string is not one, even of digits
        # (PyJWT's int() would take "9999999999" and make a forever token of it).
        pytest.param("exp", "9999999999", "exp is not a number", id="exp-numeric-string"),
        pytest.param("exp", "tomorrow", "malformed token", id="exp-word"),
        pytest.param("exp", [9999999999], "malformed token", id="exp-array"),
        pytest.param("exp", {"$gt": 0}, "malformed token", id="exp-object"),
        pytest.param("exp", True, "token expired", id="exp-true-counts-as-one-second"),
        pytest.param("nbf", "0", "nbf is not a number", id="nbf-numeric-string"),
        pytest.param("iat", "0", "iat is not a number", id="iat-numeric-string"),
        pytest.param("iat", True, "iat is not a number", id="iat-true"),
    ],
)
def test_a_time_claim_that_is_not_a_json_number_is_refused(
    target: Target, victim: Victim, db: Session, claim: str, value: Any, reason: str
) -> None:
    forgery_refused(target, db, signed(target, victim, **{claim: value}), reason)


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        # RFC 8259 §6: Infinity and NaN are not JSON; Python's parser reads them anyway.
        pytest.param('"exp": 1e400', "malformed token", id="exp-overflowing-to-infinity"),
        pytest.param('"exp": Infinity', "malformed token", id="exp-infinity-literal"),
        pytest.param('"exp": NaN', "malformed token", id="exp-nan"),
        pytest.param('"iat": -Infinity', "invalid iat", id="iat-minus-infinity"),
    ],
)
def test_a_time_claim_that_only_a_lenient_parser_reads_is_refused(
    target: Target, victim: Victim, db: Session, literal: str, reason: str
) -> None:
    name = literal.split('"')[1]
    payload = claims(victim.id, victim.session_id, ISSUER, AUDIENCE)
    text = json.dumps(payload).replace(f'"{name}": {payload[name]}', literal)
    token = hmac_signed(
        {"alg": "HS256", "typ": "at+jwt", "kid": victim.kid}, text.encode(), target.secret
    )

    forgery_refused(target, db, token, reason)


# Required claims: the contract requires exp, iat, nbf, iss, aud, sub, jti, sid.
# RFC 8725 §3.8-3.9, ASVS 5.0 9.2.1 and 9.2.3.


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "sid"])
def test_a_token_missing_a_required_claim_is_refused(
    target: Target, victim: Victim, db: Session, claim: str
) -> None:
    forgery_refused(target, db, signed(target, victim, **{claim: None}), f"missing claim {claim}")


# Explicit typing: RFC 8725 §3.11, RFC 9068 §2.1 and §4 ("at+jwt"), ASVS 5.0 9.2.2.


@pytest.mark.parametrize(
    "typ",
    [
        # RFC 8725 §3.11: a JWT of another kind (an ID token, a plain JWT) is not ours.
        pytest.param("JWT", id="plain-jwt"),
        pytest.param("jwt", id="plain-jwt-lower-case"),
        pytest.param(None, id="no-typ"),
        pytest.param("", id="empty"),
        pytest.param("at+jwt ", id="trailing-space"),
        pytest.param("application/jwt", id="application-jwt"),
        pytest.param("refresh+jwt", id="another-token-kind"),
        pytest.param("at+jwt; charset=utf-8", id="with-a-media-type-parameter"),
        pytest.param(1, id="number"),
        pytest.param(["at+jwt"], id="array"),
    ],
)
def test_a_token_of_another_type_is_refused(
    target: Target, victim: Victim, db: Session, typ: Any
) -> None:
    forgery_refused(target, db, signed(target, victim, typ=typ), "wrong token type")


# Issuer and audience: RFC 8725 §3.8 and §3.9, RFC 9068 §4, ASVS 5.0 9.2.3 and 10.3.1.


@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [
        # RFC 7519 §4.1.1 and §4.1.3: exact string comparison, no normalisation.
        pytest.param("iss", "http://evil.example", "wrong issuer", id="iss-another-issuer"),
        pytest.param("iss", ISSUER.upper(), "wrong issuer", id="iss-other-case"),
        pytest.param("iss", ISSUER + "/", "wrong issuer", id="iss-trailing-slash"),
        pytest.param("iss", [ISSUER], "wrong issuer", id="iss-array"),
        pytest.param("aud", "another-api", "wrong audience", id="aud-another-api"),
        pytest.param("aud", ["another-api"], "wrong audience", id="aud-array-without-ours"),
        pytest.param("aud", "", "missing claim aud", id="aud-empty-string"),
        pytest.param("aud", [], "missing claim aud", id="aud-empty-array"),
    ],
)
def test_a_token_for_another_issuer_or_audience_is_refused(
    target: Target, victim: Victim, db: Session, claim: str, value: Any, reason: str
) -> None:
    forgery_refused(target, db, signed(target, victim, **{claim: value}), reason)


# Subject and session: RFC 8725 §3.8 (validate the subject), ASVS 5.0 10.3.3 and 15.3.5
# (strict types: no "1.0" == 1, no digits of other scripts).


@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [
        # RFC 7519 §4.1.2: sub is a string; ours is the decimal user id, nothing else.
        pytest.param("sub", "-1", "malformed subject", id="sub-negative"),
        pytest.param("sub", "admin", "malformed subject", id="sub-a-name"),
        pytest.param("sub", "1.0", "malformed subject", id="sub-decimal"),
        pytest.param("sub", " 1", "malformed subject", id="sub-leading-space"),
        pytest.param("sub", "\u0661", "malformed subject", id="sub-arabic-indic-digit"),
        pytest.param("sub", 1, "malformed token", id="sub-json-number"),
        pytest.param("sid", "not-a-session", "malformed session id", id="sid-not-a-uuid"),
        pytest.param("sid", 1, "malformed session id", id="sid-json-number"),
    ],
)
def test_a_malformed_subject_or_session_is_refused(
    target: Target, victim: Victim, db: Session, claim: str, value: Any, reason: str
) -> None:
    forgery_refused(target, db, signed(target, victim, **{claim: value}), reason)


def test_a_valid_token_for_a_user_that_does_not_exist_reads_no_profile(
    target: Target, victim: Victim, db: Session
) -> None:
    # ASVS 5.0 8.2.2: the token names the user; a user that is not there gets no answer.
    token = signed(target, victim, sub=str(victim.id + 1_000_000))

    response = target.http.get("/account/me", headers={"Authorization": f"Bearer {token}"})

    invalid_token(response, "unknown user", token)


# Token kinds confused: RFC 8725 §2.8 and §3.12, RFC 9068 §4, ASVS 5.0 9.2.2.


def test_a_refresh_token_is_refused_as_an_access_token(
    target: Target, victim: Victim, db: Session
) -> None:
    forgery_refused(target, db, victim.refresh_token, "malformed token")


def test_an_access_token_is_refused_as_a_refresh_token(
    target: Target, victim: Victim, db: Session
) -> None:
    before = state(db)

    response = target.http.post("/account/refresh", json={"refresh_token": victim.access_token})

    invalid_token(response, "unknown refresh token", victim.access_token)
    assert state(db) == before


def test_an_access_token_ends_no_session_at_logout(
    target: Target, victim: Victim, db: Session
) -> None:
    # RFC 7009 §2.2: an unknown token is answered 204, and nothing happens.
    before = state(db)

    response = target.http.post("/account/logout", json={"refresh_token": victim.access_token})

    assert response.status_code == 204
    assert state(db) == before
    assert family(db, victim.session_id) == [(None, None)]


def test_an_access_token_is_an_invalid_grant_at_the_token_endpoint(
    target: Target, victim: Victim, db: Session
) -> None:
    before = state(db)

    response = target.http.post(
        "/account/token",
        data={"grant_type": "refresh_token", "refresh_token": victim.access_token},
    )

    oauth_error(response, {"invalid_grant"}, victim.access_token)
    assert state(db) == before


def test_the_access_token_payload_alone_is_no_refresh_token(
    target: Target, victim: Victim, db: Session
) -> None:
    # An opaque refresh token is looked up by digest: no part of a JWT names a session.
    before = state(db)
    payload = victim.access_token.split(".")[1]

    response = target.http.post("/account/refresh", json={"refresh_token": payload})

    invalid_token(response, "unknown refresh token", payload)
    assert state(db) == before
