"""A genuine access token, damaged or respelled: bit flips, truncation, padding, extra
segments, other alphabets, oversized and deeply nested tokens. The compact serialization
is three base64url segments without padding (RFC 7515 §3.1 and §2, RFC 7519 §7.2); a
token that is anything else is refused before its signature is trusted."""

import json
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from tests.attacks.conftest import Target, Victim
from tests.attacks.expect import forgery_refused
from tests.attacks.forge import AUDIENCE, ISSUER, b64url, claims, hmac_signed, segment

BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MALFORMED = "malformed token"
BAD_SIGNATURE = "bad signature"


def flip(text: str, index: int, bit: int) -> str:
    """`text` with one bit of the 6 that character `index` encodes flipped."""
    value = BASE64URL.index(text[index]) ^ (1 << bit)
    return text[:index] + BASE64URL[value] + text[index + 1 :]


def parts(token: str) -> tuple[str, str, str]:
    header, payload, signature = token.split(".")
    return header, payload, signature


Damage = Callable[[str], str]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        # RFC 7515 §5.2 step 8: any change to the signature fails validation (ASVS 5.0 9.1.1).
        pytest.param(
            lambda t: t[:-43] + flip(t[-43:], 0, 5), BAD_SIGNATURE, id="signature-first-bit"
        ),
        pytest.param(
            lambda t: t[:-43] + flip(t[-43:], 21, 0), BAD_SIGNATURE, id="signature-middle-bit"
        ),
        pytest.param(lambda t: t[:-1] + flip(t[-1:], 0, 5), BAD_SIGNATURE, id="signature-last-bit"),
        # RFC 4648 §3.5: the 2 unused bits of the last character must be zero; a lenient
        # decoder reads the same signature from four spellings.
        pytest.param(lambda t: t[:-1] + flip(t[-1:], 0, 0), MALFORMED, id="signature-unused-bit"),
        # Any change to the signing input fails validation too.
        pytest.param(
            lambda t: ".".join((parts(t)[0], flip(parts(t)[1], 10, 2), parts(t)[2])),
            BAD_SIGNATURE,
            id="payload-bit",
        ),
        pytest.param(lambda t: flip(t, 0, 0), MALFORMED, id="header-first-bit-breaks-its-json"),
    ],
)
def test_a_flipped_bit_anywhere_is_refused(
    target: Target, victim: Victim, db: Session, damage: Damage, reason: str
) -> None:
    forgery_refused(target, db, damage(victim.access_token), reason)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        # RFC 7515 §5.2: three segments; a shorter signature is another signature.
        pytest.param(lambda t: t[:-3], BAD_SIGNATURE, id="signature-cut-to-30-bytes"),
        pytest.param(lambda t: t.rsplit(".", 1)[0] + ".", BAD_SIGNATURE, id="signature-emptied"),
        pytest.param(lambda t: t.rsplit(".", 1)[0], MALFORMED, id="signature-and-dot-dropped"),
        pytest.param(lambda t: t.split(".")[0], MALFORMED, id="header-only"),
        pytest.param(lambda t: t.split(".")[0] + "..", MALFORMED, id="header-and-two-dots"),
        pytest.param(lambda t: t[: len(t) // 2], MALFORMED, id="cut-in-half"),
    ],
)
def test_a_truncated_token_is_refused(
    target: Target, victim: Victim, db: Session, damage: Damage, reason: str
) -> None:
    forgery_refused(target, db, damage(victim.access_token), reason)


@pytest.mark.parametrize(
    "damage",
    [
        # RFC 7515 §2: base64url "with all trailing '=' characters omitted".
        pytest.param(lambda t: t + "=", id="signature-padded"),
        pytest.param(lambda t: t + "==", id="signature-padded-twice"),
        pytest.param(lambda t: t.replace(".", "=.", 1), id="header-padded"),
        pytest.param(lambda t: t.replace(".", "%3D.", 1), id="header-padding-percent-encoded"),
        # RFC 7515 §2: "without the inclusion of any line breaks, whitespace, or other
        # additional characters".
        pytest.param(lambda t: t[:20] + " " + t[20:], id="space-inside"),
        pytest.param(lambda t: t[:20] + "\t" + t[20:], id="tab-inside"),
        pytest.param(lambda t: t + "\u00a0", id="trailing-no-break-space"),
        # RFC 4648 §4 vs §5: the standard alphabet is another encoding.
        pytest.param(
            lambda t: t.replace("-", "+").replace("_", "/") + "+/", id="standard-alphabet"
        ),
    ],
)
def test_another_spelling_of_a_genuine_token_is_refused(
    target: Target, victim: Victim, db: Session, damage: Damage
) -> None:
    forgery_refused(target, db, damage(victim.access_token), MALFORMED)


@pytest.mark.parametrize(
    "damage",
    [
        # RFC 7515 §7.1: a JWS has three segments; four or five is not one (five is a JWE,
        # RFC 7516 §7.1, which the service never accepts).
        pytest.param(lambda t: t + ".", id="trailing-dot"),
        pytest.param(lambda t: t + "." + segment({}), id="fourth-segment"),
        pytest.param(lambda t: t + ".e30.e30", id="five-segments"),
        pytest.param(lambda t: "." + t, id="leading-dot"),
        pytest.param(lambda t: t.replace(".", "..", 1), id="empty-segment-inserted"),
        pytest.param(
            lambda t: segment({"alg": "dir", "enc": "A256GCM"}) + "..aXY.Y3Q.dGFn",
            id="jwe-compact-form",
        ),
    ],
)
def test_a_token_with_other_than_three_segments_is_refused(
    target: Target, victim: Victim, db: Session, damage: Damage
) -> None:
    forgery_refused(target, db, damage(victim.access_token), MALFORMED)


def test_a_token_over_8_kib_is_refused_unparsed(
    target: Target, victim: Victim, db: Session
) -> None:
    # API.md: "a token over 8 KiB is refused unparsed" (a parser's work stays bounded).
    big = claims(victim.id, victim.session_id, ISSUER, AUDIENCE, padding="x" * 8 * 1024)
    token = hmac_signed({"alg": "HS256", "typ": "at+jwt", "kid": victim.kid}, big, target.secret)

    forgery_refused(target, db, token, "token too large")


def test_a_64_kib_token_is_refused_as_too_large(
    target: Target, victim: Victim, db: Session
) -> None:
    forgery_refused(target, db, "A" * 64 * 1024, "token too large")


@pytest.mark.parametrize(
    "part",
    [
        # A parser that recurses without bound: Python's json stops with RecursionError,
        # which used to escape the header check as a 500. RFC 8725 §3.4 (validate inputs).
        pytest.param("header", id="header-nested-2000-deep"),
        pytest.param("payload", id="payload-nested-2000-deep-correctly-signed"),
    ],
)
def test_a_deeply_nested_json_segment_is_refused_not_crashed(
    target: Target, victim: Victim, db: Session, part: str
) -> None:
    nested = b"[" * 2000 + b"]" * 2000
    header = json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": victim.kid}).encode()
    payload = json.dumps(claims(victim.id, victim.session_id, ISSUER, AUDIENCE)).encode()
    if part == "header":
        header = header[:-1] + b', "x": ' + nested + b"}"
    else:
        payload = payload[:-1] + b', "x": ' + nested + b"}"
    token = hmac_signed(header, payload, target.secret)
    assert len(token) < 8 * 1024

    forgery_refused(target, db, token, MALFORMED)


@pytest.mark.parametrize(
    "header",
    [
        # RFC 7515 §5.2 steps 2-4: the header is base64url of UTF-8 JSON, an object.
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[1, 2]", id="json-array"),
        pytest.param(b'"at+jwt"', id="json-string"),
        pytest.param(b'{"alg": "HS256", "kid": "\xff\xfe"}', id="not-utf-8"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_header_that_is_not_a_json_object_is_refused(
    target: Target, victim: Victim, db: Session, header: bytes
) -> None:
    payload = claims(victim.id, victim.session_id, ISSUER, AUDIENCE)
    signing_input = f"{b64url(header)}.{segment(payload)}"
    token = hmac_signed(header, payload, target.secret) if header else signing_input + ".AAAA"

    forgery_refused(target, db, token, MALFORMED)


def test_a_duplicate_alg_member_is_read_as_its_last_value(
    target: Target, victim: Victim, db: Session
) -> None:
    # RFC 7515 §4: with duplicate member names a parser uses the lexically last one, and
    # every parser on the way must agree: the last "alg" here is "none".
    header = f'{{"alg": "HS256", "typ": "at+jwt", "kid": "{victim.kid}", "alg": "none"}}'
    payload = claims(victim.id, victim.session_id, ISSUER, AUDIENCE)
    token = f"{b64url(header.encode())}.{segment(payload)}."

    forgery_refused(target, db, token, "algorithm not allowed")
