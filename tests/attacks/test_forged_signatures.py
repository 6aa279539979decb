"""Forged access tokens: no signature, the wrong algorithm, a key the attacker chose or
pointed to, a `kid` that is an injection. Each is sent to POST /account/logout-all, which
would end every session of its subject if it were believed; each must be a 401
`invalid_token` naming the failed check, with not one row changed."""

import base64
import datetime
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy.orm import Session

from app.security.keys import hmac_kid
from tests.attacks.conftest import Canary, Target, Victim, enrol
from tests.attacks.expect import forgery_refused
from tests.attacks.forge import (
    AUDIENCE,
    ISSUER,
    b64url,
    claims,
    hmac_signed,
    key_signed,
    public_pem,
    rsa_jwk,
    thumbprint,
    unsigned,
)

UNKNOWN_KID = "unknown or missing key id"
WRONG_ALG = "algorithm not allowed"
BAD_SIGNATURE = "bad signature"

# An attacker's own key pairs, fresh for this run.
ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_JWK = rsa_jwk(ATTACKER_RSA, "attacker")
ATTACKER_KID = thumbprint(ATTACKER_JWK)


def payload(victim: Victim, **overrides: Any) -> dict[str, Any]:
    return claims(victim.id, victim.session_id, ISSUER, AUDIENCE, **overrides)


def header(kid: object, alg: object = "HS256", **extra: Any) -> dict[str, Any]:
    return {"alg": alg, "typ": "at+jwt", "kid": kid, **extra}


def test_the_hand_built_reference_token_is_accepted(
    target: Target, victim: Victim, db: Session
) -> None:
    # The control: signed with the real secret, the forge's token ends the sessions, so a
    # refusal below is the attack's doing, not the forge's.
    token = hmac_signed(header(victim.kid), payload(victim), target.secret)

    response = target.http.post("/account/logout-all", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 204, response.text


# alg "none" in every case variant: RFC 8725 §2.1 and §3.1, ASVS 5.0 9.1.2. CVE-2015-9235
# (jsonwebtoken) and many libraries since matched "none" case-insensitively.
NONE_VARIANTS = sorted(
    {"".join(c.upper() if mask >> i & 1 else c for i, c in enumerate("none")) for mask in range(16)}
)


@pytest.mark.parametrize("alg", NONE_VARIANTS)
def test_an_unsigned_token_with_alg_none_in_any_case_is_refused(
    target: Target, victim: Victim, db: Session, alg: str
) -> None:
    # RFC 8725 §2.1: "none" must never be accepted for a token that needs integrity.
    token = unsigned(header(victim.kid, alg), payload(victim))

    forgery_refused(target, db, token, WRONG_ALG)


@pytest.mark.parametrize(
    "alg",
    [
        # RFC 8725 §3.1: the key decides the algorithm; a token's other spellings do not.
        pytest.param(None, id="alg-missing"),
        pytest.param("", id="alg-empty"),
        pytest.param("hs256", id="alg-lower-case"),
        pytest.param("HS256 ", id="alg-trailing-space"),
        pytest.param(["HS256"], id="alg-array"),
        # RFC 8725 §3.1: an HMAC of another size with the same secret is another algorithm.
        pytest.param("HS512", id="alg-hs512-same-secret"),
        # RFC 8725 §2.1: a "none" token that still carries a valid signature.
        pytest.param("none", id="alg-none-with-valid-signature"),
    ],
)
def test_an_algorithm_the_key_does_not_have_is_refused(
    target: Target, victim: Victim, db: Session, alg: Any
) -> None:
    jose = header(victim.kid, alg)
    if alg is None:
        del jose["alg"]
    token = hmac_signed(
        jose, payload(victim), target.secret, "HS512" if alg == "HS512" else "HS256"
    )

    forgery_refused(target, db, token, WRONG_ALG)


def test_alg_none_is_refused_by_an_rs256_server_too(rs256_target: Target, db: Session) -> None:
    # RFC 8725 §2.1, ASVS 5.0 9.1.2: "none" is on no allowlist, whatever the key type.
    victim = enrol(db, rs256_target)
    token = unsigned(header(victim.kid, "none"), payload(victim))

    forgery_refused(rs256_target, db, token, WRONG_ALG)


# HS/RS and HS/EdDSA confusion: the public key, read from the JWKS, used as an HMAC secret.
# RFC 8725 §2.1 and §3.1, ASVS 5.0 9.1.2; CVE-2015-9235 (jsonwebtoken), CVE-2016-10555
# (jwt-simple), CVE-2017-11424 and CVE-2022-29217 (PyJWT).


def published_key(target: Target) -> tuple[Any, dict[str, str]]:
    """The public key as an attacker gets it: from GET /.well-known/jwks.json."""
    [jwk] = target.http.get("/.well-known/jwks.json").json()["keys"]
    text = json.dumps(jwk)
    if jwk["kty"] == "RSA":
        return RSAAlgorithm.from_jwk(text), jwk
    if jwk["kty"] == "EC":
        return ECAlgorithm.from_jwk(text), jwk
    return OKPAlgorithm.from_jwk(text), jwk


def secrets_from(public_key: Any, jwk: dict[str, str], form: str) -> bytes:
    """The bytes a confused verifier would take as its HMAC secret."""
    if form == "jwk-json":
        return json.dumps(jwk).encode()
    encodings = {
        "pem": (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "pem-without-newline": (
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        ),
        "der": (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "pkcs1-pem": (serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "raw": (serialization.Encoding.Raw, serialization.PublicFormat.Raw),
    }
    encoding, public_format = encodings[form]
    secret: bytes = public_key.public_bytes(encoding, public_format)
    return secret.rstrip(b"\n") if form == "pem-without-newline" else secret


@pytest.mark.parametrize(
    ("alg", "form"),
    [
        # CVE-2015-9235: the PEM a server verifies RS256 with, as the HS256 secret.
        pytest.param("HS256", "pem", id="hs256-pem"),
        # CVE-2017-11424: PEM variants a naive "is this a PEM?" check misses.
        pytest.param("HS256", "pem-without-newline", id="hs256-pem-without-newline"),
        pytest.param("HS256", "pkcs1-pem", id="hs256-pkcs1-pem"),
        pytest.param("HS256", "der", id="hs256-der"),
        # RFC 8725 §3.1: the public JWK itself as an HMAC secret.
        pytest.param("HS256", "jwk-json", id="hs256-jwk"),
        # RFC 8725 §3.1: any HMAC size.
        pytest.param("HS384", "pem", id="hs384-pem"),
        pytest.param("HS512", "pem", id="hs512-pem"),
    ],
)
def test_hs_rs_confusion_with_the_published_rsa_key_is_refused(
    rs256_target: Target, db: Session, alg: str, form: str
) -> None:
    victim = enrol(db, rs256_target)
    public_key, jwk = published_key(rs256_target)
    secret = secrets_from(public_key, jwk, form)
    token = hmac_signed(header(victim.kid, alg), payload(victim), secret, alg)

    forgery_refused(rs256_target, db, token, WRONG_ALG)


@pytest.mark.parametrize(
    ("alg", "form"),
    [
        # CVE-2022-29217 (PyJWT): Ed25519 public keys slipped past its PEM check.
        pytest.param("HS256", "pem", id="hs256-pem"),
        pytest.param("HS256", "pem-without-newline", id="hs256-pem-without-newline"),
        pytest.param("HS256", "raw", id="hs256-raw-32-bytes"),
        pytest.param("HS256", "jwk-json", id="hs256-jwk"),
        pytest.param("HS512", "der", id="hs512-der"),
    ],
)
def test_hs_eddsa_confusion_with_the_published_ed25519_key_is_refused(
    eddsa_target: Target, db: Session, alg: str, form: str
) -> None:
    victim = enrol(db, eddsa_target)
    public_key, jwk = published_key(eddsa_target)
    secret = secrets_from(public_key, jwk, form)
    token = hmac_signed(header(victim.kid, alg), payload(victim), secret, alg)

    forgery_refused(eddsa_target, db, token, WRONG_ALG)


@pytest.mark.parametrize(
    "kid",
    [
        # RFC 8725 §3.10: without our kid the confusion names no key at all.
        pytest.param(None, id="no-kid"),
        pytest.param("pem-as-hmac-key", id="kid-the-pem-would-have-as-an-hmac-key"),
    ],
)
def test_hs_rs_confusion_under_another_kid_finds_no_key(
    rs256_target: Target, db: Session, kid: str | None
) -> None:
    # ASVS 5.0 9.1.3: keys come from configuration only, never from the token.
    victim = enrol(db, rs256_target)
    public_key, jwk = published_key(rs256_target)
    pem = secrets_from(public_key, jwk, "pem")
    jose = header(hmac_kid(pem))
    if kid is None:
        del jose["kid"]
    token = hmac_signed(jose, payload(victim), pem)

    forgery_refused(rs256_target, db, token, UNKNOWN_KID)


def test_an_es256_token_signed_with_the_public_key_as_hmac_secret_is_refused(
    es256_target: Target, db: Session
) -> None:
    # RFC 8725 §2.1: the confusion with an EC P-256 key.
    victim = enrol(db, es256_target)
    public_key, jwk = published_key(es256_target)
    token = hmac_signed(header(victim.kid), payload(victim), secrets_from(public_key, jwk, "pem"))

    forgery_refused(es256_target, db, token, WRONG_ALG)


@pytest.mark.parametrize(
    "signature",
    [
        # CVE-2022-21449 ("psychic signatures", Java): r = s = 0 verified any message.
        pytest.param(bytes(64), id="r-and-s-zero"),
        # SEC 1 §4.1.4: r and s must lie in [1, n-1]; n itself is out of range.
        pytest.param(
            (0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551).to_bytes(32, "big")
            * 2,
            id="r-and-s-the-group-order",
        ),
    ],
)
def test_an_out_of_range_ecdsa_signature_is_refused(
    es256_target: Target, db: Session, signature: bytes
) -> None:
    victim = enrol(db, es256_target)
    forged = unsigned(header(victim.kid, "ES256"), payload(victim)) + b64url(signature)

    forgery_refused(es256_target, db, forged, BAD_SIGNATURE)


# Keys offered by the token itself: jwk, jku, x5u, x5c. RFC 8725 §3.10, RFC 7515 §4.1.2-6,
# ASVS 5.0 9.1.3 ("key material ... from trusted pre-configured sources").


def attacker_certificate() -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ATTACKER_RSA.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ATTACKER_RSA, hashes.SHA256())
    )
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


@pytest.mark.parametrize(
    ("extra", "own_kid"),
    [
        # CVE-2018-0114 (node-jose): the embedded jwk verified the token it came in.
        pytest.param({"jwk": ATTACKER_JWK}, True, id="embedded-jwk-own-kid"),
        pytest.param({"jwk": ATTACKER_JWK}, False, id="embedded-jwk-server-kid"),
        # RFC 8725 §3.10: jku and x5u are URLs a server must not fetch keys from (SSRF).
        pytest.param({"jku": "{canary}/jwks.json"}, True, id="jku-own-kid"),
        pytest.param({"jku": "{canary}/jwks.json"}, False, id="jku-server-kid"),
        pytest.param({"x5u": "{canary}/cert.pem"}, False, id="x5u-server-kid"),
        pytest.param({"x5c": ["{certificate}"]}, False, id="x5c-self-signed-server-kid"),
        pytest.param({"x5c": ["{certificate}"]}, True, id="x5c-self-signed-own-kid"),
    ],
)
def test_a_key_offered_or_pointed_to_by_the_token_is_never_used(
    rs256_target: Target, db: Session, canary: Canary, extra: dict[str, Any], own_kid: bool
) -> None:
    victim = enrol(db, rs256_target)
    fetched_before = len(canary.requests)
    filled = json.loads(
        json.dumps(extra)
        .replace("{canary}", canary.url)
        .replace("{certificate}", attacker_certificate())
    )
    kid = ATTACKER_KID if own_kid else victim.kid
    token = key_signed(header(kid, "RS256", **filled), payload(victim), ATTACKER_RSA)

    forgery_refused(rs256_target, db, token, UNKNOWN_KID if own_kid else BAD_SIGNATURE)
    assert len(canary.requests) == fetched_before


@pytest.mark.parametrize(
    "own_kid",
    [
        # RFC 7517 §6.4: an "oct" JWK is a symmetric key; offering one is offering the secret.
        pytest.param(True, id="oct-jwk-own-kid"),
        pytest.param(False, id="oct-jwk-server-kid"),
    ],
)
def test_an_hmac_key_offered_in_the_token_is_never_used(
    target: Target, victim: Victim, db: Session, own_kid: bool
) -> None:
    secret = b"the attacker's own secret of enough length"
    jwk = {"kty": "oct", "k": b64url(secret), "kid": "attacker"}
    token = hmac_signed(
        header("attacker" if own_kid else victim.kid, jwk=jwk), payload(victim), secret
    )

    forgery_refused(target, db, token, UNKNOWN_KID if own_kid else BAD_SIGNATURE)


# crit: RFC 7515 §4.1.11 ("If any of the listed extension Header Parameters are not
# understood and supported by the recipient, then the JWS is invalid"). Signed with the
# real secret, so the refusal is crit's alone.


@pytest.mark.parametrize(
    "extra",
    [
        # RFC 7515 §4.1.11: crit MUST NOT name registered parameters, nor be empty.
        pytest.param({"crit": ["exp"]}, id="crit-naming-a-registered-claim"),
        # RFC 7797: an unencoded payload the verifier would have to treat differently.
        pytest.param({"crit": ["b64"], "b64": False}, id="crit-b64-false"),
        pytest.param({"crit": ["x-policy"], "x-policy": "admin"}, id="crit-unknown-extension"),
        pytest.param({"crit": []}, id="crit-empty-list"),
        pytest.param({"crit": "x-policy", "x-policy": 1}, id="crit-not-a-list"),
    ],
)
def test_a_critical_header_extension_is_refused(
    target: Target, victim: Victim, db: Session, extra: dict[str, Any]
) -> None:
    token = hmac_signed(header(victim.kid, **extra), payload(victim), target.secret)

    forgery_refused(target, db, token, "unsupported critical header")


# kid injection: RFC 8725 §3.10 ("the kid ... value is untrusted input"), ASVS 5.0 1.2.4
# (database injection), 1.3.6 (SSRF) and 9.1.3. Each token is signed with the key the
# injection would make a naive server use: the empty contents of /dev/null, the value a
# UNION would return, the body the canary serves.


@pytest.mark.parametrize(
    ("kid", "key"),
    [
        # RFC 8725 §2.9 and §3.10: kid read as a file path, SQL, URL or command.
        pytest.param("../../../../../../../../dev/null", b"", id="path-traversal-dev-null"),
        pytest.param("/dev/null", b"", id="absolute-path-dev-null"),
        pytest.param("file:///dev/null", b"", id="file-url"),
        pytest.param("../../../../etc/hostname", b"localhost", id="path-traversal-hostname"),
        pytest.param("../.token_secret_key", b"guess", id="path-traversal-key-file"),
        pytest.param("' OR '1'='1", b"", id="sql-always-true"),
        pytest.param("x' UNION SELECT 'attacker' -- ", b"attacker", id="sql-union"),
        pytest.param("1; DROP TABLE users; --", b"", id="sql-stacked-drop"),
        pytest.param("{canary}/key", b'{"keys": []}', id="url-to-canary"),
        pytest.param("| cat /etc/passwd", b"", id="command-injection"),
        pytest.param("{server_kid}\u0000", b"{secret}", id="server-kid-then-nul"),
        pytest.param("{server_kid_upper}", b"{secret}", id="server-kid-other-case"),
        pytest.param("", b"{secret}", id="empty"),
        pytest.param("k" * 4096, b"", id="4-kib-kid"),
        pytest.param({"$ne": None}, b"", id="nosql-operator-object"),
        pytest.param(["{server_kid}"], b"{secret}", id="array-holding-the-server-kid"),
        pytest.param(0, b"", id="number"),
    ],
)
def test_an_injection_in_kid_finds_no_key(
    target: Target, victim: Victim, db: Session, canary: Canary, kid: Any, key: bytes
) -> None:
    fetched_before = len(canary.requests)
    filled_kid = json.loads(
        json.dumps(kid)
        .replace("{canary}", canary.url)
        .replace("{server_kid}", victim.kid)
        .replace("{server_kid_upper}", victim.kid.swapcase())
    )
    secret = target.secret if key == b"{secret}" else key
    token = hmac_signed(header(filled_kid), payload(victim), secret)

    forgery_refused(target, db, token, UNKNOWN_KID)
    assert len(canary.requests) == fetched_before
    # Every table the injections aimed at still answers (the state check read them).


def test_an_attacker_own_ed25519_key_under_the_server_kid_is_refused(
    eddsa_target: Target, db: Session
) -> None:
    # ASVS 5.0 9.1.1: a signature by any other key of the right type is a bad signature.
    victim = enrol(db, eddsa_target)
    token = key_signed(
        header(victim.kid, "EdDSA"), payload(victim), ed25519.Ed25519PrivateKey.generate()
    )

    forgery_refused(eddsa_target, db, token, BAD_SIGNATURE)


def test_an_attacker_own_p256_key_under_the_server_kid_is_refused(
    es256_target: Target, db: Session
) -> None:
    victim = enrol(db, es256_target)
    token = key_signed(
        header(victim.kid, "ES256"), payload(victim), ec.generate_private_key(ec.SECP256R1())
    )

    forgery_refused(es256_target, db, token, BAD_SIGNATURE)


def test_the_victims_own_key_file_pem_is_never_an_hmac_secret(
    rs256_target: Target, db: Session
) -> None:
    # CVE-2015-9235 once more, with the exact bytes of the server's key file's public half.
    victim = enrol(db, rs256_target)
    assert rs256_target.signing_key is not None
    token = hmac_signed(header(victim.kid), payload(victim), public_pem(rs256_target.signing_key))

    forgery_refused(rs256_target, db, token, WRONG_ALG)
