"""Signing and verification keys, each bound to exactly one algorithm and named by its kid."""

import base64
import hashlib
from dataclasses import dataclass

HMAC_KID_LENGTH = 16


@dataclass(frozen=True, repr=False)
class Key:
    kid: str
    algorithm: str
    material: bytes

    def __repr__(self) -> str:  # never print key material
        return f"Key(kid={self.kid!r}, algorithm={self.algorithm!r})"


def hmac_kid(secret: bytes) -> str:
    """The first characters of the base64url SHA-256 of the key: names it without revealing it."""
    digest = hashlib.sha256(secret).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:HMAC_KID_LENGTH]


def hmac_key(secret: bytes, algorithm: str = "HS256") -> Key:
    return Key(kid=hmac_kid(secret), algorithm=algorithm, material=secret)
