"""AccessTokenCodec: every check of the contract's "Tokens" section, one token at a time.

Most tokens are built by hand (base64url JSON header and payload, HMAC signature) so that
each variant is explicit and none depends on what PyJWT agrees to produce.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from app.security.access_tokens import (
    MAX_TOKEN_LENGTH,
    AccessClaims,
    AccessTokenCodec,
    TokenRejected,
)
from app.security.keys import PRIVATE_KEY_TYPES, Key, hmac_key, hmac_kid, jwk_thumbprint
from tests.keyfiles import ASYMMETRIC, private_key

SECRET = b"a test secret that is longer than thirty-two bytes"
OTHER_SECRET = b"another secret, also longer than thirty-two bytes"
KID = hmac_kid(SECRET)
ISSUER = "http://testserver"
AUDIENCE = "API"
SESSION_ID = uuid.UUID("5f0c7a8e-3b1d-4c2e-9a6f-0d8e7b6a5c4d")


def make_codec(
    *, leeway_seconds: int = 0, verification_keys: Iterable[Key] = ()
) -> AccessTokenCodec:
    return AccessTokenCodec(
        signing_key=hmac_key(SECRET),
        verification_keys=verification_keys,
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway_seconds=leeway_seconds,
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def json_segment(value: object) -> str:
    """A JSON value as a base64url segment; bytes are taken as already-serialised JSON text."""
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64url(data)


def sign(
    header: object, payload: object, *, key: bytes | None = SECRET, digest: str = "sha256"
) -> str:
    """A compact JWS made by hand; `key=None` leaves the signature empty (as `alg: none` does)."""
    signing_input = f"{json_segment(header)}.{json_segment(payload)}"
    if key is None:
        return f"{signing_input}."
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def valid_header(*, drop: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": "HS256", "typ": "at+jwt", "kid": KID} | overrides
    for name in drop:
        del header[name]
    return header


def valid_claims(*, drop: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "sid": str(SESSION_ID),
        "email": "ada@example.com",
    } | overrides
    for name in drop:
        del claims[name]
    return claims


def decoded_segment(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    value: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return value


def rejection(token: str, codec: AccessTokenCodec | None = None) -> str:
    """The reason the codec gives for refusing `token`; fails the test if it accepts it."""
    with pytest.raises(TokenRejected) as excinfo:
        (codec or make_codec()).decode(token)
    return excinfo.value.reason


def test_the_hand_made_reference_token_is_accepted() -> None:
    # Every rejection test below changes one thing of this token.
    claims = valid_claims()

    decoded = make_codec().decode(sign(valid_header(), claims))

    assert decoded == AccessClaims(
        user_id=42,
        session_id=SESSION_ID,
        token_id=claims["jti"],
        email="ada@example.com",
        expires_at=claims["exp"],
    )


# Round trip


def test_a_minted_token_carries_every_claim_of_the_contract_and_decodes_back() -> None:
    codec = make_codec()
    issued_at = datetime.now(UTC).replace(microsecond=0)
    expires_at = issued_at + timedelta(minutes=20)

    token = codec.mint(
        user_id=42,
        email="ada@example.com",
        phone="+441234567890",
        session_id=SESSION_ID,
        issued_at=issued_at,
        expires_at=expires_at,
    )

    payload = decoded_segment(token, 1)
    assert isinstance(payload["jti"], str)
    assert payload["jti"]
    assert payload == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "iat": int(issued_at.timestamp()),
        "nbf": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": payload["jti"],
        "sid": str(SESSION_ID),
        "email": "ada@example.com",
        "phone": "+441234567890",
        "roles": [],
        "amr": ["pwd"],
    }
    assert codec.decode(token) == AccessClaims(
        user_id=42,
        session_id=SESSION_ID,
        token_id=payload["jti"],
        email="ada@example.com",
        expires_at=int(expires_at.timestamp()),
    )


def test_amr_is_minted_sorted_and_read_back() -> None:
    codec = make_codec()
    now = datetime.now(UTC)
    token = codec.mint(
        user_id=1,
        email="ada@example.com",
        phone=None,
        session_id=SESSION_ID,
        issued_at=now,
        expires_at=now + timedelta(minutes=5),
        amr=["pwd", "otp", "mfa"],
    )
    assert decoded_segment(token, 1)["amr"] == ["mfa", "otp", "pwd"]
    assert codec.decode(token).amr == ("mfa", "otp", "pwd")


def test_a_minted_token_has_the_at_jwt_type_and_the_hmac_kid_of_its_secret() -> None:
    now = datetime.now(UTC)

    token = make_codec().mint(
        user_id=1,
        email="ada@example.com",
        phone=None,
        session_id=SESSION_ID,
        issued_at=now,
        expires_at=now + timedelta(minutes=5),
    )

    assert decoded_segment(token, 0) == {"alg": "HS256", "typ": "at+jwt", "kid": hmac_kid(SECRET)}
    assert jwt.get_unverified_header(token)["kid"] == KID


def test_a_minted_token_verifies_with_its_secret_under_pyjwt() -> None:
    now = datetime.now(UTC)
    token = make_codec().mint(
        user_id=7,
        email="ada@example.com",
        phone=None,
        session_id=SESSION_ID,
        issued_at=now,
        expires_at=now + timedelta(minutes=5),
    )

    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)

    assert claims["sub"] == "7"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, OTHER_SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)


def test_the_phone_claim_is_omitted_when_the_user_has_no_phone() -> None:
    now = datetime.now(UTC)

    token = make_codec().mint(
        user_id=42,
        email="ada@example.com",
        phone=None,
        session_id=SESSION_ID,
        issued_at=now,
        expires_at=now + timedelta(minutes=5),
    )

    assert "phone" not in decoded_segment(token, 1)


def test_each_minted_token_has_its_own_jti() -> None:
    codec = make_codec()
    now = datetime.now(UTC)
    tokens = [
        codec.mint(
            user_id=42,
            email="ada@example.com",
            phone=None,
            session_id=SESSION_ID,
            issued_at=now,
            expires_at=now + timedelta(minutes=5),
        )
        for _ in range(3)
    ]

    assert len({codec.decode(token).token_id for token in tokens}) == 3


def test_the_hmac_kid_names_the_key_without_revealing_it() -> None:
    kid = hmac_kid(SECRET)

    assert len(kid) == 16
    assert kid == b64url(hashlib.sha256(SECRET).digest())[:16]
    assert kid not in SECRET.decode()
    assert hmac_kid(OTHER_SECRET) != kid


# Time checks


@pytest.mark.parametrize("seconds_ago", [0, 1], ids=["expiring-now", "expired-one-second-ago"])
def test_an_expired_token_is_refused_with_zero_leeway(seconds_ago: int) -> None:
    token = sign(valid_header(), valid_claims(exp=int(time.time()) - seconds_ago))

    assert rejection(token) == "token expired"


def test_a_token_expired_within_the_configured_leeway_is_accepted() -> None:
    token = sign(valid_header(), valid_claims(exp=int(time.time()) - 1))

    assert make_codec(leeway_seconds=30).decode(token).user_id == 42


def test_a_token_expired_beyond_the_configured_leeway_is_refused() -> None:
    token = sign(valid_header(), valid_claims(exp=int(time.time()) - 60))

    assert rejection(token, make_codec(leeway_seconds=30)) == "token expired"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_token_valid_only_in_the_future_is_refused(claim: str) -> None:
    token = sign(valid_header(), valid_claims() | {claim: int(time.time()) + 60})

    assert rejection(token) == "token not yet valid"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_token_valid_from_within_the_leeway_is_accepted(claim: str) -> None:
    token = sign(valid_header(), valid_claims() | {claim: int(time.time()) + 10})

    assert make_codec(leeway_seconds=30).decode(token).user_id == 42


@pytest.mark.parametrize(
    "exp",
    [str(int(time.time()) + 86_400), "tomorrow"],
    ids=["numeric-string", "word"],
)
def test_an_exp_that_is_a_string_is_refused(exp: str) -> None:
    # RFC 7519 §4.1.4: exp is a NumericDate, a JSON number; "1767225600" is not one.
    token = sign(valid_header(), valid_claims(exp=exp))

    with pytest.raises(TokenRejected):
        make_codec().decode(token)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
@pytest.mark.parametrize("form", ["numeric-string", "word"])
def test_an_iat_or_nbf_that_is_a_string_is_refused(claim: str, form: str) -> None:
    # RFC 7519 §2: NumericDate is a JSON numeric value.
    value = str(int(time.time()) - 10) if form == "numeric-string" else "yesterday"
    token = sign(valid_header(), valid_claims() | {claim: value})

    with pytest.raises(TokenRejected):
        make_codec().decode(token)


# Issuer and audience


@pytest.mark.parametrize(
    "iss",
    ["http://evil.example", "http://testserver/", "HTTP://TESTSERVER", ""],
    ids=["other-host", "trailing-slash", "other-case", "empty"],
)
def test_a_token_from_another_issuer_is_refused(iss: str) -> None:
    token = sign(valid_header(), valid_claims(iss=iss))

    assert rejection(token) == "wrong issuer"


@pytest.mark.parametrize(
    "aud",
    ["other-api", "api", ["other-api"], [AUDIENCE, 1], {"API": 1}, 1],
    ids=["other", "other-case", "array-without-it", "array-with-a-number", "object", "number"],
)
def test_a_token_for_another_audience_is_refused(aud: object) -> None:
    token = sign(valid_header(), valid_claims(aud=aud))

    assert rejection(token) == "wrong audience"


@pytest.mark.parametrize("aud", ["", []], ids=["empty-string", "empty-array"])
def test_an_empty_audience_counts_as_missing(aud: object) -> None:
    token = sign(valid_header(), valid_claims(aud=aud))

    assert rejection(token) == "missing claim aud"


@pytest.mark.parametrize(
    "aud", [[AUDIENCE], ["other-api", AUDIENCE]], ids=["only-it", "among-others"]
)
def test_an_audience_array_containing_the_audience_is_accepted(aud: list[str]) -> None:
    token = sign(valid_header(), valid_claims(aud=aud))

    assert make_codec().decode(token).user_id == 42


# Required claims


REQUIRED = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "sid"]


@pytest.mark.parametrize("claim", REQUIRED)
def test_a_token_without_a_required_claim_is_refused(claim: str) -> None:
    token = sign(valid_header(), valid_claims(drop=[claim]))

    assert rejection(token) == f"missing claim {claim}"


@pytest.mark.parametrize("claim", REQUIRED)
def test_a_token_with_a_required_claim_set_to_null_is_refused(claim: str) -> None:
    token = sign(valid_header(), valid_claims() | {claim: None})

    assert rejection(token) == f"missing claim {claim}"


@pytest.mark.parametrize(
    "sub",
    ["ada", "-1", "+42", "4 2", " 42", "", "4.2", "\u0664\u0662", "9" * 20],
    ids=[
        "letters",
        "negative",
        "plus-sign",
        "inner-space",
        "leading-space",
        "empty",
        "decimal",
        "arabic-indic-digits",
        "too-long-for-a-user-id",
    ],
)
def test_a_subject_that_is_not_ascii_digits_is_refused(sub: str) -> None:
    token = sign(valid_header(), valid_claims(sub=sub))

    assert rejection(token) == "malformed subject"


def test_a_subject_that_is_a_json_number_is_refused() -> None:
    # The contract: sub is the user id *as a string* (RFC 7519 §4.1.2 StringOrURI).
    token = sign(valid_header(), valid_claims(sub=42))

    with pytest.raises(TokenRejected):
        make_codec().decode(token)


@pytest.mark.parametrize(
    "sid",
    ["not-a-uuid", "", "1234", str(SESSION_ID)[:-1], 42],
    ids=["word", "empty", "digits", "truncated", "number"],
)
def test_a_session_id_that_is_not_a_uuid_is_refused(sid: object) -> None:
    token = sign(valid_header(), valid_claims(sid=sid))

    assert rejection(token) == "malformed session id"


# Keys and algorithms


def test_a_token_without_kid_is_refused() -> None:
    token = sign(valid_header(drop=["kid"]), valid_claims())

    assert rejection(token) == "unknown or missing key id"


@pytest.mark.parametrize(
    "kid",
    ["unknown-kid", "", KID.lower(), KID[:-1]],
    ids=["other", "empty", "lower-case", "prefix"],
)
def test_a_token_with_an_unknown_kid_is_refused(kid: str) -> None:
    token = sign(valid_header(kid=kid), valid_claims())

    assert rejection(token) == "unknown or missing key id"


@pytest.mark.parametrize("kid", [42, [KID], {"kid": KID}], ids=["number", "array", "object"])
def test_a_kid_that_is_not_a_string_is_refused(kid: object) -> None:
    token = sign(valid_header(kid=kid), valid_claims())

    with pytest.raises(TokenRejected):
        make_codec().decode(token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_an_unsigned_alg_none_token_is_refused(alg: str) -> None:
    token = sign(valid_header(alg=alg), valid_claims(), key=None)

    assert rejection(token) == "algorithm not allowed"


@pytest.mark.parametrize(
    ("alg", "digest"),
    [("HS384", "sha384"), ("HS512", "sha512"), ("hs256", "sha256")],
    ids=["HS384", "HS512", "lower-case-HS256"],
)
def test_another_hmac_algorithm_with_the_same_key_is_refused(alg: str, digest: str) -> None:
    token = sign(valid_header(alg=alg), valid_claims(), digest=digest)

    assert rejection(token) == "algorithm not allowed"


def test_a_token_without_alg_is_refused() -> None:
    token = sign(valid_header(drop=["alg"]), valid_claims())

    assert rejection(token) == "algorithm not allowed"


def test_a_token_signed_with_another_secret_under_our_kid_is_refused() -> None:
    token = sign(valid_header(), valid_claims(), key=OTHER_SECRET)

    assert rejection(token) == "bad signature"


def test_a_token_signed_with_another_secret_under_its_own_kid_is_refused() -> None:
    token = sign(valid_header(kid=hmac_kid(OTHER_SECRET)), valid_claims(), key=OTHER_SECRET)

    assert rejection(token) == "unknown or missing key id"


def test_a_token_with_a_tampered_payload_is_refused() -> None:
    header_segment, _, signature = sign(valid_header(), valid_claims()).split(".")
    forged = json_segment(valid_claims(sub="1"))

    assert rejection(f"{header_segment}.{forged}.{signature}") == "bad signature"


def test_a_token_signed_with_a_previous_key_kept_for_rotation_is_accepted() -> None:
    codec = make_codec(verification_keys=[hmac_key(OTHER_SECRET)])
    token = sign(valid_header(kid=hmac_kid(OTHER_SECRET)), valid_claims(), key=OTHER_SECRET)

    assert codec.decode(token).user_id == 42


@pytest.fixture(scope="module")
def public_pem() -> bytes:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_public_key_pem_used_as_hmac_secret_is_refused(public_pem: bytes) -> None:
    # PyJWT refuses to HMAC with a PEM, hence the hand-made signature.
    token = sign(valid_header(), valid_claims(), key=public_pem)

    assert rejection(token) == "bad signature"


def test_hmac_with_a_verification_public_key_as_secret_is_refused(public_pem: bytes) -> None:
    # RFC 8725 §2.1 algorithm confusion: the RSA key's kid, HS256, its public PEM as the secret.
    rsa_key = Key(kid="rsa-previous", algorithm="RS256", material=public_pem)
    codec = make_codec(verification_keys=[rsa_key])
    token = sign(valid_header(kid=rsa_key.kid), valid_claims(), key=public_pem)

    assert rejection(token, codec) == "algorithm not allowed"


def test_an_hmac_signature_under_an_rsa_kid_and_alg_is_refused(public_pem: bytes) -> None:
    rsa_key = Key(kid="rsa-previous", algorithm="RS256", material=public_pem)
    codec = make_codec(verification_keys=[rsa_key])
    token = sign(valid_header(kid=rsa_key.kid, alg="RS256"), valid_claims(), key=public_pem)

    assert rejection(token, codec) == "bad signature"


# Header type and critical parameters


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_the_access_token_type_is_compared_case_insensitively(typ: str) -> None:
    token = sign(valid_header(typ=typ), valid_claims())

    assert make_codec().decode(token).user_id == 42


def test_a_token_without_typ_is_refused() -> None:
    token = sign(valid_header(drop=["typ"]), valid_claims())

    assert rejection(token) == "wrong token type"


@pytest.mark.parametrize(
    "typ",
    ["JWT", "jwt", "application/jwt", "rt+jwt", "at+jwt ", "application/application/at+jwt", 1],
    ids=[
        "JWT",
        "jwt",
        "application-jwt",
        "other-type",
        "trailing-space",
        "double-prefix",
        "number",
    ],
)
def test_a_token_of_another_type_is_refused(typ: object) -> None:
    token = sign(valid_header(typ=typ), valid_claims())

    assert rejection(token) == "wrong token type"


def test_a_crit_header_naming_a_parameter_present_in_the_header_is_refused() -> None:
    # b64 is the one extension PyJWT lets through; the codec understands none.
    token = sign(valid_header(crit=["b64"], b64=True), valid_claims())

    assert rejection(token) == "unsupported critical header"


@pytest.mark.parametrize(
    "extra",
    [{"crit": ["exp"], "exp": 1}, {"crit": ["urn:example"]}, {"crit": []}, {"crit": "b64"}],
    ids=["unknown-extension", "absent-extension", "empty-list", "not-a-list"],
)
def test_any_other_crit_header_is_refused(extra: dict[str, Any]) -> None:
    token = sign(valid_header(**extra), valid_claims())

    # PyJWT rejects these before the codec's own check, so the reason may be the generic one.
    assert rejection(token) in {"unsupported critical header", "malformed token"}


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "http://127.0.0.1:1/jwks.json"},
        {"x5u": "http://127.0.0.1:1/cert.pem"},
        {"jwk": {"kty": "oct", "k": b64url(OTHER_SECRET)}},
    ],
    ids=["jku", "x5u", "jwk"],
)
def test_a_key_offered_in_the_header_is_never_used(extra: dict[str, Any]) -> None:
    token = sign(valid_header(**extra), valid_claims(), key=OTHER_SECRET)

    assert rejection(token) == "bad signature"


# Size and shape


def token_of_length(length: int) -> str:
    """A correctly signed token of exactly `length` characters, padded by an extra claim."""
    for spaces in range(4):
        # base64url never ends on a length of 4n+1, so spaces in the header shift the total.
        header = json.dumps(valid_header()).replace("{", "{" + " " * spaces, 1).encode()
        for size in range(length):
            token = sign(header, valid_claims(pad="x" * size))
            if len(token) == length:
                return token
            if len(token) > length:
                break
    raise AssertionError(f"no token of length {length}")


def test_a_token_of_exactly_8_kib_is_accepted() -> None:
    token = token_of_length(MAX_TOKEN_LENGTH)

    assert MAX_TOKEN_LENGTH == 8 * 1024
    assert make_codec().decode(token).user_id == 42


def test_a_token_over_8_kib_is_refused_as_too_large() -> None:
    token = token_of_length(8 * 1024 + 1)

    assert rejection(token) == "token too large"


def test_a_huge_token_is_refused_as_too_large_before_it_is_parsed() -> None:
    assert rejection("x" * 1_000_000) == "token too large"


HEADER_SEGMENT = json_segment(valid_header())
PAYLOAD_SEGMENT = json_segment(valid_claims(exp=int(time.time()) + 86_400))
SIGNATURE_SEGMENT = b64url(b"\x00" * 32)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "..",
        f"{HEADER_SEGMENT}.{PAYLOAD_SEGMENT}",
        f"{HEADER_SEGMENT}.{PAYLOAD_SEGMENT}.{SIGNATURE_SEGMENT}.{SIGNATURE_SEGMENT}",
        "!!!!.????.$$$$",
        f"{HEADER_SEGMENT}.{PAYLOAD_SEGMENT}.not*base64",
        f"{b64url(b'not json')}.{PAYLOAD_SEGMENT}.{SIGNATURE_SEGMENT}",
        f"{json_segment([1, 2])}.{PAYLOAD_SEGMENT}.{SIGNATURE_SEGMENT}",
        f"{json_segment('at+jwt')}.{PAYLOAD_SEGMENT}.{SIGNATURE_SEGMENT}",
        "Bearer " + sign(valid_header(), valid_claims()),
    ],
    ids=[
        "empty-string",
        "empty-segments",
        "two-segments",
        "four-segments",
        "non-base64",
        "signature-not-base64",
        "header-not-json",
        "header-json-array",
        "header-json-string",
        "with-scheme-prefix",
    ],
)
def test_a_malformed_token_is_refused(token: str) -> None:
    assert rejection(token) == "malformed token"


BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def signed_with_url_safe_characters() -> str:
    """A valid token whose signature holds "-" or "_", the two base64url-only characters."""
    while True:
        token = sign(valid_header(), valid_claims())
        if {"-", "_"} & set(token.rsplit(".", 1)[1]):
            return token


def set_unused_bits(signature: str) -> str:
    # 32 signature bytes take 43 characters: the last one carries 2 unused bits, zero in
    # the one canonical encoding.
    last = BASE64URL.index(signature[-1])
    return signature[:-1] + BASE64URL[last | 0b01]


@pytest.mark.parametrize(
    "respell",
    [
        pytest.param(lambda signature: signature + "=", id="padded"),
        pytest.param(lambda signature: signature + "==", id="twice-padded"),
        pytest.param(set_unused_bits, id="unused-bits-set"),
        pytest.param(
            lambda signature: signature.replace("-", "+").replace("_", "/"),
            id="standard-alphabet",
        ),
    ],
)
def test_another_spelling_of_a_valid_signature_is_refused(respell: Any) -> None:
    # RFC 7515 §2 and RFC 4648 §3.5: base64url without padding, one encoding per value.
    token = signed_with_url_safe_characters()
    make_codec().decode(token)
    signing_input, _, signature = token.rpartition(".")

    respelled = f"{signing_input}.{respell(signature)}"

    assert respelled != token
    assert rejection(respelled) == "malformed token"


def test_a_header_nested_thousands_of_levels_deep_is_refused_not_crashed() -> None:
    # Within 8 KiB: JSON parsers recurse, and Python's stops with RecursionError.
    header = b'{"alg": "HS256", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    token = sign(header, valid_claims())

    assert len(token) < MAX_TOKEN_LENGTH
    assert rejection(token) == "malformed token"


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1, 2]", b'"a string"'],
    ids=["not-json", "json-array", "json-string"],
)
def test_a_correctly_signed_token_whose_payload_is_not_a_json_object_is_refused(
    payload: bytes,
) -> None:
    token = sign(valid_header(), payload)

    assert rejection(token) == "malformed token"


# Asymmetric keys: RS256, ES256, EdDSA
#
# As above, the attacks are built by hand: PyJWT refuses to HMAC with a PEM and to sign a token
# whose algorithm does not fit its key. The signatures come from `cryptography` directly.

# The order of the P-256 group (SEC 2 §2.4.2): r and s must lie in [1, n-1].
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def asymmetric_key(kind: str, copy: int = 0) -> Key:
    """The signing key of a test key pair, named by its RFC 7638 thumbprint."""
    private = private_key(kind, copy)
    assert isinstance(private, PRIVATE_KEY_TYPES)
    return Key(kid=jwk_thumbprint(private.public_key()), algorithm=kind, material=private)


def asymmetric_codec(kind: str, *, verification_keys: Iterable[Key] = ()) -> AccessTokenCodec:
    return AccessTokenCodec(
        signing_key=asymmetric_key(kind),
        verification_keys=verification_keys,
        issuer=ISSUER,
        audience=AUDIENCE,
    )


def public_pem_of(kind: str, copy: int = 0) -> bytes:
    return (
        private_key(kind, copy)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def raw_signature(private: PrivateKeyTypes, data: bytes) -> bytes:
    """A JWS signature (RFC 7518 §3.3-3.4, RFC 8037 §3.1) made with `cryptography` alone."""
    if isinstance(private, rsa.RSAPrivateKey):
        return private.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private, ec.EllipticCurvePrivateKey):
        # RFC 7518 §3.4: R and S as 32-byte big-endian integers, not the DER that ECDSA returns.
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(data)
    raise TypeError(type(private).__name__)


def sign_with(header: object, payload: object, kind: str, copy: int = 0) -> str:
    signing_input = f"{json_segment(header)}.{json_segment(payload)}"
    signature = raw_signature(private_key(kind, copy), signing_input.encode())
    return f"{signing_input}.{b64url(signature)}"


def asymmetric_header(kind: str, copy: int = 0, **overrides: Any) -> dict[str, Any]:
    return valid_header(**({"alg": kind, "kid": asymmetric_key(kind, copy).kid} | overrides))


@pytest.mark.parametrize("kind", ASYMMETRIC)
def test_each_algorithm_signs_a_token_that_it_verifies(kind: str) -> None:
    codec = asymmetric_codec(kind)
    now = datetime.now(UTC)

    token = codec.mint(
        user_id=42,
        email="ada@example.com",
        phone=None,
        session_id=SESSION_ID,
        issued_at=now,
        expires_at=now + timedelta(minutes=5),
    )

    assert decoded_segment(token, 0) == {
        "alg": kind,
        "typ": "at+jwt",
        "kid": asymmetric_key(kind).kid,
    }
    assert codec.decode(token).user_id == 42
    claims = jwt.decode(
        token,
        private_key(kind).public_key(),  # type: ignore[arg-type]
        algorithms=[kind],
        audience=AUDIENCE,
        issuer=ISSUER,
    )
    assert claims["sub"] == "42"


@pytest.mark.parametrize("kind", ASYMMETRIC)
def test_a_hand_signed_token_of_each_algorithm_is_accepted(kind: str) -> None:
    # The reference for the attacks below: the hand-made signatures are right.
    token = sign_with(asymmetric_header(kind), valid_claims(), kind)

    assert asymmetric_codec(kind).decode(token).user_id == 42


@pytest.mark.parametrize("kind", ASYMMETRIC)
def test_a_token_signed_by_another_key_of_the_same_type_under_our_kid_is_refused(
    kind: str,
) -> None:
    token = sign_with(asymmetric_header(kind), valid_claims(), kind, copy=1)

    assert rejection(token, asymmetric_codec(kind)) == "bad signature"


@pytest.mark.parametrize(
    "previous",
    [
        pytest.param(asymmetric_key("RS256", copy=1), id="RS256"),
        pytest.param(asymmetric_key("ES256"), id="ES256"),
        pytest.param(asymmetric_key("EdDSA"), id="EdDSA"),
        pytest.param(hmac_key(OTHER_SECRET), id="HS256"),
    ],
)
def test_a_token_signed_by_a_previous_key_kept_for_rotation_is_valid(previous: Key) -> None:
    old_codec = AccessTokenCodec(signing_key=previous, issuer=ISSUER, audience=AUDIENCE)
    now = datetime.now(UTC)
    token = old_codec.mint(
        user_id=42,
        email="ada@example.com",
        phone=None,
        session_id=SESSION_ID,
        issued_at=now,
        expires_at=now + timedelta(minutes=5),
    )
    # The previous key is kept only as a verifier: its public half, or the secret.
    kept = Key(
        kid=previous.kid, algorithm=previous.algorithm, material=previous.verification_material
    )

    assert asymmetric_codec("RS256", verification_keys=[kept]).decode(token).user_id == 42


@pytest.mark.parametrize("kind", ASYMMETRIC)
def test_a_token_signed_by_a_removed_key_is_refused(kind: str) -> None:
    token = sign_with(asymmetric_header(kind, copy=1), valid_claims(), kind, copy=1)

    assert rejection(token, asymmetric_codec(kind)) == "unknown or missing key id"


@pytest.mark.parametrize(
    "secret_form",
    [
        serialization.PublicFormat.SubjectPublicKeyInfo,
        serialization.PublicFormat.PKCS1,
    ],
    ids=["spki-pem", "pkcs1-pem"],
)
def test_the_rsa_public_key_pem_as_hmac_secret_is_refused_when_rs256_is_configured(
    secret_form: serialization.PublicFormat,
) -> None:
    # RFC 8725 §2.1: HS256 "signed" with the public key everyone can fetch from the JWKS.
    public = private_key("RS256").public_key()
    secret = public.public_bytes(serialization.Encoding.PEM, secret_form)
    codec = asymmetric_codec("RS256")
    under_rsa_kid = sign(asymmetric_header("RS256", alg="HS256"), valid_claims(), key=secret)
    claiming_rs256 = sign(asymmetric_header("RS256"), valid_claims(), key=secret)

    assert rejection(under_rsa_kid, codec) == "algorithm not allowed"
    assert rejection(claiming_rs256, codec) == "bad signature"


def test_an_es256_token_is_refused_when_rs256_is_configured() -> None:
    codec = asymmetric_codec("RS256")
    rsa_kid = asymmetric_key("RS256").kid

    under_rsa_kid = sign_with(valid_header(alg="ES256", kid=rsa_kid), valid_claims(), "ES256")
    under_its_own_kid = sign_with(asymmetric_header("ES256"), valid_claims(), "ES256")
    claiming_rs256 = sign_with(valid_header(alg="RS256", kid=rsa_kid), valid_claims(), "ES256")

    assert rejection(under_rsa_kid, codec) == "algorithm not allowed"
    assert rejection(under_its_own_kid, codec) == "unknown or missing key id"
    assert rejection(claiming_rs256, codec) == "bad signature"


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(SECRET, id="some-secret"),
        pytest.param(public_pem_of("EdDSA"), id="public-key-pem"),
        pytest.param(
            private_key("EdDSA")
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
            id="raw-public-key",
        ),
    ],
)
def test_an_hs256_token_is_refused_when_eddsa_is_configured_and_no_hmac_key_is_kept(
    secret: bytes,
) -> None:
    codec = asymmetric_codec("EdDSA")

    under_its_own_kid = sign(valid_header(kid=hmac_kid(secret)), valid_claims(), key=secret)
    under_eddsa_kid = sign(asymmetric_header("EdDSA", alg="HS256"), valid_claims(), key=secret)

    assert rejection(under_its_own_kid, codec) == "unknown or missing key id"
    assert rejection(under_eddsa_kid, codec) == "algorithm not allowed"


@pytest.mark.parametrize(
    "alg", ["Ed25519", "eddsa", "ES256", "RS256"], ids=["Ed25519", "lower-case", "ES256", "RS256"]
)
def test_an_ed25519_key_verifies_under_its_one_alg_name_only(alg: str) -> None:
    # RFC 9864's fully-specified "Ed25519" names the same signature, but the key is bound to
    # the "EdDSA" it was configured with.
    token = sign_with(asymmetric_header("EdDSA", alg=alg), valid_claims(), "EdDSA")

    assert rejection(token, asymmetric_codec("EdDSA")) == "algorithm not allowed"


@pytest.mark.parametrize(
    "signature",
    [
        b"\x00" * 64,
        P256_ORDER.to_bytes(32, "big") * 2,
        b"\x00" * 32 + (1).to_bytes(32, "big"),
        b"",
        b"\x00" * 63,
        b"\x00" * 72,
    ],
    ids=["r-s-zero", "r-s-group-order", "r-zero", "empty", "63-bytes", "der-length"],
)
def test_an_ecdsa_signature_out_of_range_is_refused(signature: bytes) -> None:
    # CVE-2022-21449 ("psychic signatures"): r = s = 0 verified any message in Java 15-18.
    signing_input = f"{json_segment(asymmetric_header('ES256'))}.{json_segment(valid_claims())}"
    token = f"{signing_input}.{b64url(signature)}"

    assert rejection(token, asymmetric_codec("ES256")) == "bad signature"


@pytest.mark.parametrize(
    "parameter",
    ["jwk", "jku", "x5u", "x5c"],
)
def test_a_key_offered_in_the_header_of_an_asymmetric_token_is_never_used(parameter: str) -> None:
    # The attacker signs with their own key and offers it (or where to fetch it) in the header.
    attacker_public = private_key("ES256", copy=1).public_key()
    assert isinstance(attacker_public, ec.EllipticCurvePublicKey)
    offered: dict[str, Any] = {
        "jwk": jwt.algorithms.ECAlgorithm.to_jwk(attacker_public, as_dict=True),
        "jku": "http://127.0.0.1:1/jwks.json",
        "x5u": "http://127.0.0.1:1/cert.pem",
        "x5c": [b64url(public_pem_of("ES256", copy=1))],
    }
    header = asymmetric_header("ES256", **{parameter: offered[parameter]})
    token = sign_with(header, valid_claims(), "ES256", copy=1)

    assert rejection(token, asymmetric_codec("ES256")) == "bad signature"


@pytest.mark.parametrize("kind", ASYMMETRIC)
def test_an_unknown_crit_header_is_refused_with_an_asymmetric_key(kind: str) -> None:
    header = asymmetric_header(kind, crit=["urn:example:extension"], **{"urn:example:extension": 1})
    token = sign_with(header, valid_claims(), kind)

    assert rejection(token, asymmetric_codec(kind)) in {
        "unsupported critical header",
        "malformed token",
    }


@pytest.mark.parametrize("kind", ASYMMETRIC)
def test_an_asymmetric_token_of_another_type_is_refused(kind: str) -> None:
    token = sign_with(asymmetric_header(kind, typ="JWT"), valid_claims(), kind)

    assert rejection(token, asymmetric_codec(kind)) == "wrong token type"
