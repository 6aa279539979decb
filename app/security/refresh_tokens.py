"""Refresh tokens: opaque random strings; only their SHA-256 digest is ever stored."""

import hashlib
import secrets

REFRESH_TOKEN_BYTES = 32  # 256 bits from the OS CSPRNG
# token_urlsafe(32) gives 43 characters; anything far from that is not ours.
MAX_REFRESH_TOKEN_LENGTH = 128


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
