"""Encryption of data at rest under DATA_ENCRYPTION_KEY, with rotation; pure functions.

A sealed value is `version (1 byte) | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM
ciphertext and tag`. The key id names the key that sealed it, so values sealed under a
previous key (DATA_PREVIOUS_ENCRYPTION_KEYS) still open during a rotation, and a value
whose key is gone is refused rather than guessed at. Each use seals with its own
`purpose` as associated data: a value copied from one column to another does not open.

The configured secrets are never used directly: HKDF-SHA-256 (RFC 5869) derives the
AES key, the key id, and any named subkey (`subkey`, for HMACs such as recovery-code
digests), so the secret itself may be any string of at least 32 bytes.
"""

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x01"
KEY_ID_BYTES = 8
NONCE_BYTES = 12  # NIST SP 800-38D: 96-bit random nonces
TAG_BYTES = 16
HEADER_BYTES = len(VERSION) + KEY_ID_BYTES + NONCE_BYTES
MIN_SECRET_BYTES = 32
_SALT = b"jwt-auth-api data encryption"


class SealError(ValueError):
    """A sealed value that cannot be opened: malformed, tampered with, or under an unknown key."""


def _derive(secret: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(secret)


@dataclass(frozen=True)
class DataKey:
    """One DATA_ENCRYPTION_KEY secret and what HKDF derives from it."""

    key_id: bytes
    aead: AESGCM = field(repr=False)
    secret: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: bytes) -> "DataKey":
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"a data encryption key must be at least {MIN_SECRET_BYTES} bytes")
        return cls(
            key_id=_derive(secret, b"key id", KEY_ID_BYTES),
            aead=AESGCM(_derive(secret, b"aes-256-gcm")),
            secret=secret,
        )

    @property
    def kid(self) -> str:
        """The key id as text, for a column that records which key made a digest."""
        return self.key_id.hex()

    def subkey(self, name: str) -> bytes:
        """A 32-byte key for one named use (an HMAC, say), independent of every other use."""
        return _derive(self.secret, b"subkey " + name.encode())


class Sealer:
    """Seals under the current key; opens under the current or any previous key."""

    def __init__(self, current: bytes, previous: Iterable[bytes] = ()) -> None:
        self.current = DataKey.from_secret(current)
        self._keys: dict[bytes, DataKey] = {self.current.key_id: self.current}
        for secret in previous:
            key = DataKey.from_secret(secret)
            self._keys.setdefault(key.key_id, key)

    @property
    def keys(self) -> list[DataKey]:
        """The current key first, then the previous ones."""
        return list(self._keys.values())

    def key(self, kid: str) -> DataKey | None:
        """The key with this id (`DataKey.kid`), or None when it is no longer configured."""
        try:
            return self._keys.get(bytes.fromhex(kid))
        except ValueError:
            return None

    def seal(self, plaintext: bytes, *, purpose: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        header = VERSION + self.current.key_id + nonce
        return header + self.current.aead.encrypt(nonce, plaintext, _aad(header, purpose))

    def open(self, sealed: bytes, *, purpose: str) -> bytes:
        if len(sealed) < HEADER_BYTES + TAG_BYTES or sealed[:1] != VERSION:
            raise SealError("not a sealed value")
        key_id = sealed[1 : 1 + KEY_ID_BYTES]
        key = self._keys.get(key_id)
        if key is None:
            raise SealError(f"sealed under key {key_id.hex()}, which is not configured")
        header, nonce = sealed[:HEADER_BYTES], sealed[1 + KEY_ID_BYTES : HEADER_BYTES]
        try:
            return key.aead.decrypt(nonce, sealed[HEADER_BYTES:], _aad(header, purpose))
        except InvalidTag:
            raise SealError("the sealed value was altered or belongs elsewhere") from None


def _aad(header: bytes, purpose: str) -> bytes:
    # The header is authenticated too: a key id swapped in place fails the tag.
    return header + hashlib.sha256(purpose.encode()).digest()
