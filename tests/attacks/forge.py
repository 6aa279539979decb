"""Tokens built by hand, byte by byte, as an attacker builds them: no JOSE library decides
what may be produced (PyJWT refuses to HMAC with a PEM, or to sign `alg: none`)."""

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "http://testserver"
AUDIENCE = "API"
DIGESTS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def segment(value: object) -> str:
    """A JSON value as a base64url segment; bytes are taken as already-serialised text."""
    return b64url(value if isinstance(value, bytes) else json.dumps(value).encode())


def decoded(token: str, index: int) -> dict[str, Any]:
    """The header (0) or payload (1) of a compact JWS, unverified."""
    value: dict[str, Any] = json.loads(unb64url(token.split(".")[index]))
    return value


def hmac_signed(header: object, payload: object, key: bytes, alg: str = "HS256") -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = hmac.new(key, signing_input.encode(), DIGESTS[alg]).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned(header: object, payload: object) -> str:
    """The shape of an `alg: none` JWS: an empty signature (RFC 7519 §6.1)."""
    return f"{segment(header)}.{segment(payload)}."


def key_signed(header: object, payload: object, key: PrivateKeyTypes) -> str:
    """RS256, ES256 (raw r || s, RFC 7518 §3.4) or EdDSA with an asymmetric private key."""
    signing_input = f"{segment(header)}.{segment(payload)}".encode()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(signing_input)
    else:  # pragma: no cover - the tests use the three types above
        raise TypeError(type(key))
    return f"{signing_input.decode()}.{b64url(signature)}"


def claims(
    user_id: int, session_id: str, issuer: str, audience: str, **overrides: Any
) -> dict[str, Any]:
    """The claims the service issues, for this user and session; None drops a claim."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": str(user_id),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "sid": session_id,
        "email": "victim@example.com",
    } | overrides
    return {name: value for name, value in values.items() if value is not None}


def public_pem(key: PrivateKeyTypes) -> bytes:
    """The SubjectPublicKeyInfo PEM an attacker reads from the JWKS or a key file."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(numbers.e.to_bytes(3, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint of an RSA JWK."""
    members = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    return b64url(hashlib.sha256(members.encode()).digest())
