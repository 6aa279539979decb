"""Access tokens: RFC 9068-style JWS, minted and checked with PyJWT and nothing left to defaults."""

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from app.security.keys import HMAC_ALGORITHMS, Key

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068 media type
MAX_TOKEN_LENGTH = 8 * 1024
MAX_SUBJECT_DIGITS = 9
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "sid", "email"]
# RFC 7515 §3.1 and §2: three base64url segments without padding, whitespace or other
# characters (PyJWT then refuses a segment that is not the canonical encoding of its
# bytes, but reads a padded one; an alg "none" token's empty signature is refused by alg).
COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# RFC 7518 §3.2: the hash of each HMAC algorithm.
_HMAC_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


class TokenRejected(Exception):
    """An access token failed a check; `reason` is safe to show (it never holds the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    session_id: uuid.UUID
    token_id: str
    email: str
    expires_at: int
    # RFC 8176 methods; a token minted before `amr` existed reads as a password login.
    amr: tuple[str, ...] = ("pwd",)


def _is_access_token_type(typ: object) -> bool:
    # RFC 7515 §4.1.9: media types compare case-insensitively and may omit "application/".
    if not isinstance(typ, str):
        return False
    typ = typ.lower()
    return typ.removeprefix("application/") == ACCESS_TOKEN_TYPE


class AccessTokenCodec:
    def __init__(
        self,
        *,
        signing_key: Key,
        verification_keys: Iterable[Key] = (),
        issuer: str,
        audience: str,
        leeway_seconds: int = 0,
    ) -> None:
        self._signing_key = signing_key
        # Verification needs only the public half of an asymmetric signing key.
        self._keys = {key.kid: key.verifying() for key in (signing_key, *verification_keys)}
        # HMAC keys are checked here, before PyJWT parses anything (asymmetric keys: PyJWT).
        self._hmac_secrets = {
            kid: key.material
            for kid, key in self._keys.items()
            if key.algorithm in HMAC_ALGORITHMS and isinstance(key.material, bytes)
        }
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        # The JOSE header segment of every token minted here: nearly every token presented
        # carries it, and a forged one usually copies it, so it is parsed once, now.
        self._own_header = ""
        own = self._sign({}).partition(".")[0]
        if self._key_for(own).kid != signing_key.kid:  # pragma: no cover - a broken key set
            raise ValueError("the signing key does not verify its own tokens")
        self._own_header = own

    def mint(
        self,
        *,
        user_id: int,
        email: str,
        phone: str | None,
        session_id: uuid.UUID,
        issued_at: datetime,
        expires_at: datetime,
        roles: Sequence[str] = (),
        amr: Sequence[str] = ("pwd",),
    ) -> str:
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "iat": int(issued_at.timestamp()),
            "nbf": int(issued_at.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": uuid.uuid4().hex,
            "sid": str(session_id),
            "email": email,
            # Read by resource servers; the service's own role checks read the database.
            "roles": sorted(roles),
            # RFC 8176: how the user authenticated ("mfa", "otp" after a second factor).
            "amr": sorted(set(amr)),
        }
        if phone:
            claims["phone"] = phone
        return self._sign(claims)

    def _sign(self, claims: dict[str, Any]) -> str:
        key = self._signing_key
        return jwt.encode(
            claims,
            key.signing_material,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": ACCESS_TOKEN_TYPE},
        )

    def decode(self, token: str) -> AccessClaims:
        """Every check of the contract, or TokenRejected naming the first that failed."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRejected("token too large")
        if not COMPACT_JWS.fullmatch(token):
            raise TokenRejected("malformed token")
        key = self._key_for(token)
        secret = self._hmac_secrets.get(key.kid)
        if secret is not None:
            # The signature first, over the raw signing input: a forged token costs one HMAC
            # and no claims parsing. PyJWT then reads the (now authentic) claims.
            _check_hmac(token, secret, _HMAC_DIGESTS[key.algorithm])
        return self._verified_claims(token, key)

    def _key_for(self, token: str) -> Key:
        """The key the JOSE header names, once the header passed every check."""
        if token.partition(".")[0] == self._own_header:
            # The header this service mints, byte for byte: its checks passed at start-up.
            return self._keys[self._signing_key.kid]
        header = _peek_header(token)
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenRejected("unknown or missing key id")
        # RFC 8725 §3.1: the key decides the algorithm, never the token ("none" included).
        if header.get("alg") != key.algorithm:
            raise TokenRejected("algorithm not allowed")
        if not _is_access_token_type(header.get("typ")):
            raise TokenRejected("wrong token type")
        # RFC 7515 §4.1.11: we understand no extension, so any "crit" must be refused.
        if "crit" in header:
            raise TokenRejected("unsupported critical header")
        return key

    def _verified_claims(self, token: str, key: Key) -> AccessClaims:
        try:
            # jku, x5u, jwk and x5c are never read: the key comes from our configuration alone.
            claims = jwt.decode(
                token,
                key.verification_material,
                algorithms=[key.algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": REQUIRED_CLAIMS,
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_iss": True,
                    "verify_aud": True,
                    "verify_sub": True,
                    "verify_jti": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("token not yet valid") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad signature") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("wrong audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"missing claim {exc.claim}") from None
        except jwt.InvalidIssuedAtError:
            raise TokenRejected("invalid iat") from None
        except (jwt.PyJWTError, RecursionError):
            raise TokenRejected("malformed token") from None
        return _claims(claims)


_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# RFC 4648 §3.5: the last character of a segment of 2 (or 3) characters modulo 4 carries 4
# (or 2) unused bits, zero in the one canonical encoding.
_CANONICAL_LAST = {2: frozenset(_BASE64URL[::16]), 3: frozenset(_BASE64URL[::4])}


def _is_canonical(segment: str) -> bool:
    """Whether a segment of base64url characters (COMPACT_JWS checked the alphabet) is
    the one canonical encoding of its bytes, as PyJWT requires; nothing is decoded."""
    remainder = len(segment) % 4
    if remainder == 0:
        return True
    last = _CANONICAL_LAST.get(remainder)
    return last is not None and segment[-1] in last


def _check_hmac(token: str, secret: bytes, digest: Callable[[], Any]) -> None:
    """The HMAC signature of a compact JWS whose header passed, compared in constant time.

    Every segment must be canonical base64url first (the shape check, as in PyJWT), so the
    reason stays "malformed token" for a token that is both malformed and forged. The
    expected signature is encoded and compared as text: nothing of the token is decoded."""
    signing_input, _, signature = token.rpartition(".")
    if not all(map(_is_canonical, token.split("."))):
        raise TokenRejected("malformed token")
    expected = base64.urlsafe_b64encode(hmac.digest(secret, signing_input.encode(), digest))
    if not hmac.compare_digest(expected.rstrip(b"="), signature.encode()):
        raise TokenRejected("bad signature")


def _peek_header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to pick the key and refuse early; PyJWT's decode then
    parses the whole token strictly and verifies it. (PyJWT's own get_unverified_header
    would parse and validate the token a second time on every request.)"""
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, UnicodeError, RecursionError):
        # RecursionError: a header of thousands of nested arrays fits in 8 KiB.
        raise TokenRejected("malformed token") from None
    if not isinstance(header, dict):
        raise TokenRejected("malformed token")
    return header


def _claims(claims: dict[str, Any]) -> AccessClaims:
    # RFC 7519 §2: NumericDate is a JSON number; PyJWT's int() would also take "1767225600".
    for name in ("exp", "iat", "nbf"):
        if isinstance(claims[name], bool) or not isinstance(claims[name], int | float):
            raise TokenRejected(f"{name} is not a number")
    sub, sid, email = claims["sub"], claims["sid"], claims["email"]
    # The user id is a 32-bit integer column: a longer number is no user of ours.
    if not sub.isascii() or not sub.isdigit() or len(sub) > MAX_SUBJECT_DIGITS:
        raise TokenRejected("malformed subject")
    try:
        session_id = uuid.UUID(sid) if isinstance(sid, str) else None
    except ValueError:
        session_id = None
    if session_id is None:
        raise TokenRejected("malformed session id")
    if not isinstance(email, str) or not email:
        raise TokenRejected("malformed email claim")
    amr = claims.get("amr", ["pwd"])
    if not isinstance(amr, list) or not all(isinstance(method, str) for method in amr):
        raise TokenRejected("malformed amr claim")
    return AccessClaims(
        user_id=int(sub),
        session_id=session_id,
        token_id=claims["jti"],
        email=email,
        expires_at=int(claims["exp"]),
        amr=tuple(amr),
    )
