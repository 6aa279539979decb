"""Tokens of mailed account links: 256 random bits, URL-safe; only their SHA-256 digest is
stored, so a database leak yields no usable link."""

import hashlib
import re
import secrets

LINK_TOKEN_BYTES = 32  # 256 bits from the OS CSPRNG
# token_urlsafe(32) is 43 characters of the base64url alphabet; anything else is not ours
# and is refused before any database lookup.
_WELL_FORMED = re.compile(r"[A-Za-z0-9_-]{43}")


def new_link_token() -> str:
    return secrets.token_urlsafe(LINK_TOKEN_BYTES)


def is_well_formed(token: str) -> bool:
    return _WELL_FORMED.fullmatch(token) is not None


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()
