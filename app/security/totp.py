"""TOTP (RFC 6238) codes and recovery codes; pure functions, time passed in.

pyotp computes the codes (HMAC-SHA-1, 6 digits, 30 s steps: what every authenticator app
reads from an `otpauth://` URI); this module decides which steps a code may belong to and
never compares a code with `==`.
"""

import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp

STEP_SECONDS = 30
DIGITS = 6
# RFC 6238 §5.2: one step either side covers clock drift and the time it takes to type.
WINDOW = 1
SECRET_BYTES = 20  # 160 bits, RFC 4226 §4's recommended shared-secret length
# Crockford's base32 without i, l, o and u: nothing a person can misread.
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_CODE_COUNT = 10
RECOVERY_GROUP = 5  # two groups of five characters: 50 random bits per code
MAX_CODE_LENGTH = 64


def new_secret() -> str:
    """A fresh shared secret, base32 as authenticator apps expect it."""
    return pyotp.random_base32(length=SECRET_BYTES * 8 // 5)


def otpauth_uri(secret: str, *, account: str, issuer: str) -> str:
    """The `otpauth://totp/...` URI an authenticator app scans (SHA-1, 6 digits, 30 s)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def step_at(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def code_at_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(step * STEP_SECONDS)


def matching_step(secret: str, code: str, *, now: datetime) -> int | None:
    """The latest step within the window whose code this is, or None.

    Whether that step was already used (a replay) is the caller's to decide, atomically.
    """
    code = code.strip()
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = step_at(now)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        # Every candidate is compared, in constant time, so timing tells nothing.
        if hmac.compare_digest(code_at_step(secret, step), code):
            found = step
    return found


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """`count` codes `xxxxx-xxxxx` from RECOVERY_ALPHABET, each from the CSPRNG."""
    codes = []
    for _ in range(count):
        chars = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(2 * RECOVERY_GROUP))
        codes.append(f"{chars[:RECOVERY_GROUP]}-{chars[RECOVERY_GROUP:]}")
    return codes


def normalize_recovery_code(code: str) -> str | None:
    """The code as it is digested: without the dash, lower-case; None when it cannot be one."""
    compact = code.strip().replace("-", "").lower()
    if len(compact) != 2 * RECOVERY_GROUP or any(c not in RECOVERY_ALPHABET for c in compact):
        return None
    return compact


def recovery_digest(key: bytes, code: str) -> bytes:
    """HMAC-SHA-256 of a normalized code: 50 random bits hashed without a key would fall to
    a brute force of a database dump; under a key derived from DATA_ENCRYPTION_KEY they do
    not."""
    return hmac.new(key, code.encode("ascii"), hashlib.sha256).digest()
