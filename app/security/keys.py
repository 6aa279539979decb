"""Signing and verification keys, each bound to exactly one algorithm and named by its kid.

`load_keys` is the one place that builds them: the current signing key (an HMAC secret or a
PEM private key) and the previous keys that still verify during a rotation.
"""

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

HMAC_KID_LENGTH = 16
HMAC_ALGORITHMS = ("HS256",)
# One key type per algorithm, so a key's type decides its algorithm (RFC 8725 §3.1).
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256", "EdDSA")
# RFC 7518 §3.3: RSA keys of 2048 bits or more; new keys get 3072 (NIST SP 800-57 beyond 2030).
MIN_RSA_KEY_BITS = 2048
GENERATED_RSA_KEY_BITS = 3072
MAX_KEY_FILE_BYTES = 64 * 1024

SECRET_VARIABLE = "TOKEN_SECRET_KEY"  # noqa: S105 - a variable name
PRIVATE_KEY_VARIABLE = "TOKEN_PRIVATE_KEY_FILE"
PREVIOUS_PUBLIC_KEYS_VARIABLE = "TOKEN_PREVIOUS_PUBLIC_KEY_FILES"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
PUBLIC_KEY_TYPES = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)


class KeySettingError(ValueError):
    """A key setting cannot be used. `variable` names it; `reason` never holds key material."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable} {reason}")
        self.variable = variable
        self.reason = reason


@dataclass(frozen=True, repr=False)
class Key:
    """`material` is an HMAC secret (bytes), or a private key to sign, or a public key to verify."""

    kid: str
    algorithm: str
    material: bytes | PrivateKey | PublicKey

    def __repr__(self) -> str:  # never print key material
        return f"Key(kid={self.kid!r}, algorithm={self.algorithm!r})"

    @property
    def public_key(self) -> PublicKey | None:
        """The public half of an asymmetric key; None for an HMAC secret."""
        if isinstance(self.material, PRIVATE_KEY_TYPES):
            return self.material.public_key()
        if isinstance(self.material, PUBLIC_KEY_TYPES):
            return self.material
        return None

    @property
    def signing_material(self) -> bytes | PrivateKey:
        if isinstance(self.material, PUBLIC_KEY_TYPES):
            raise TypeError(f"key {self.kid} is a public key and cannot sign")
        return self.material

    @property
    def verification_material(self) -> bytes | PublicKey:
        if isinstance(self.material, PRIVATE_KEY_TYPES):
            return self.material.public_key()
        return self.material

    def verifying(self) -> "Key":
        """The same key as a verifier holds it: an asymmetric key keeps only its public half."""
        public = self.public_key
        if public is None or public is self.material:
            return self
        return Key(kid=self.kid, algorithm=self.algorithm, material=public)


@dataclass(frozen=True)
class KeySet:
    """The key that signs new tokens and the previous keys that still verify older ones."""

    signing: Key
    previous: tuple[Key, ...] = field(default=())

    @cached_property
    def public_jwks(self) -> list[dict[str, str]]:
        """The JWKs of every asymmetric key, current first; an HMAC secret is never published."""
        jwks = (public_jwk(key) for key in (self.signing, *self.previous))
        return [jwk for jwk in jwks if jwk is not None]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hmac_kid(secret: bytes) -> str:
    """The first characters of the base64url SHA-256 of the key: names it without revealing it."""
    digest = hashlib.sha256(secret).digest()
    return _b64url(digest)[:HMAC_KID_LENGTH]


def hmac_key(secret: bytes, algorithm: str = "HS256") -> Key:
    return Key(kid=hmac_kid(secret), algorithm=algorithm, material=secret)


def _required_members(public: PublicKey) -> dict[str, str]:
    """The members a JWK thumbprint hashes: RFC 7638 §3.2 (RSA, EC) and RFC 8037 §2 (OKP)."""
    jwk: dict[str, Any]
    names: tuple[str, ...]
    if isinstance(public, rsa.RSAPublicKey):
        jwk, names = RSAAlgorithm.to_jwk(public, as_dict=True), ("e", "kty", "n")
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk, names = ECAlgorithm.to_jwk(public, as_dict=True), ("crv", "kty", "x", "y")
    else:
        jwk, names = OKPAlgorithm.to_jwk(public, as_dict=True), ("crv", "kty", "x")
    return {name: str(jwk[name]) for name in names}


def jwk_thumbprint(public: PublicKey) -> str:
    """RFC 7638 §3: base64url SHA-256 of the required members, sorted, without whitespace."""
    canonical = json.dumps(_required_members(public), sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: Key) -> dict[str, str] | None:
    """The RFC 7517 public JWK of an asymmetric key, or None for an HMAC secret."""
    public = key.public_key
    if public is None:
        return None
    # RFC 7517 §4.2-4.4: "use" alone (not "key_ops" too), and the key's one algorithm.
    return {**_required_members(public), "kid": key.kid, "alg": key.algorithm, "use": "sig"}


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"a {key.key_size}-bit RSA key"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"an EC {names.get(key.curve.name, key.curve.name)} key"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "an Ed25519 key"
    kind = type(key).__name__.removesuffix("PrivateKey").removesuffix("PublicKey")
    return f"a key of type {kind}"


def _algorithm_of(key: object) -> str | None:
    """The one algorithm a key type is used with here, or None for an unsupported type."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        # RFC 7518 §3.4: ES256 is ECDSA on P-256 and nothing else.
        return "ES256" if isinstance(key.curve, ec.SECP256R1) else None
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    return None


def _unsupported(variable: str, path: Path, key: object) -> KeySettingError:
    return KeySettingError(
        variable,
        f"{path} holds {_describe(key)}; supported are RSA (RS256), EC P-256 (ES256) "
        "and Ed25519 (EdDSA)",
    )


def _check_size(variable: str, path: Path, key: object) -> None:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and key.key_size < MIN_RSA_KEY_BITS:
        raise KeySettingError(
            variable, f"{path} holds {_describe(key)}; RS256 needs at least {MIN_RSA_KEY_BITS} bits"
        )


def _read_pem(variable: str, path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeySettingError(variable, f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeySettingError(variable, f"{path} is larger than a PEM key can be")
    return data


def _is_private_pem(data: bytes) -> bool:
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: still a private key
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _is_public_pem(data: bytes) -> bool:
    try:
        serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def load_private_key(path: Path, algorithm: str) -> Key:
    """The signing key in a PEM file (PKCS#8 or traditional); its type must match `algorithm`."""
    variable = PRIVATE_KEY_VARIABLE
    data = _read_pem(variable, path)
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeySettingError(
            variable, f"{path} is encrypted; the service reads an unencrypted PEM key (mode 0600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        if _is_public_pem(data):
            raise KeySettingError(
                variable, f"{path} holds a public key; a private key is expected"
            ) from None
        raise KeySettingError(
            variable, f"{path} is not a PEM private key (PKCS#8 or traditional)"
        ) from None
    key_algorithm = _algorithm_of(private)
    if key_algorithm is None or not isinstance(private, PRIVATE_KEY_TYPES):
        raise _unsupported(variable, path, private)
    _check_size(variable, path, private)
    if key_algorithm != algorithm:
        raise KeySettingError(
            variable,
            f"{path} holds {_describe(private)}, which signs {key_algorithm}, "
            f"but TOKEN_ALGORITHM is {algorithm}",
        )
    return Key(kid=jwk_thumbprint(private.public_key()), algorithm=algorithm, material=private)


def load_public_key(path: Path) -> Key:
    """A previous verification key in a PEM file; its type decides its one algorithm."""
    variable = PREVIOUS_PUBLIC_KEYS_VARIABLE
    data = _read_pem(variable, path)
    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        if _is_private_pem(data):
            raise KeySettingError(
                variable,
                f"{path} holds a private key; list its public key instead "
                f"(openssl pkey -in {path} -pubout)",
            ) from None
        raise KeySettingError(variable, f"{path} is not a PEM public key") from None
    algorithm = _algorithm_of(public)
    if algorithm is None or not isinstance(public, PUBLIC_KEY_TYPES):
        raise _unsupported(variable, path, public)
    _check_size(variable, path, public)
    return Key(kid=jwk_thumbprint(public), algorithm=algorithm, material=public)


def load_keys(
    *,
    algorithm: str,
    secret_key: bytes | None,
    private_key_file: Path | None,
    previous_public_key_files: Sequence[Path] = (),
    previous_secret_keys: Sequence[bytes] = (),
) -> KeySet:
    """The signing key `algorithm` needs and every previous key, or KeySettingError.

    A previous key may have any supported algorithm: that is how a switch from HS256 to RS256
    keeps the tokens already issued valid until they expire.
    """
    if algorithm in HMAC_ALGORITHMS:
        if private_key_file is not None:
            raise KeySettingError(
                PRIVATE_KEY_VARIABLE,
                f"is set, but TOKEN_ALGORITHM is {algorithm}, which signs with {SECRET_VARIABLE}; "
                "set TOKEN_ALGORITHM to the key's algorithm, or unset the file",
            )
        if secret_key is None:
            raise KeySettingError(
                SECRET_VARIABLE, f"is required when TOKEN_ALGORITHM is {algorithm}"
            )
        signing = hmac_key(secret_key, algorithm)
    elif algorithm in ASYMMETRIC_ALGORITHMS:
        if private_key_file is None:
            raise KeySettingError(
                PRIVATE_KEY_VARIABLE,
                f"is required when TOKEN_ALGORITHM is {algorithm} "
                "(create one with: jwt-auth-api keys generate)",
            )
        signing = load_private_key(private_key_file, algorithm)
    else:
        raise KeySettingError("TOKEN_ALGORITHM", f"{algorithm} is not supported")

    previous: dict[str, Key] = {}
    for key in (
        *(load_public_key(path) for path in previous_public_key_files),
        *(hmac_key(secret) for secret in previous_secret_keys),
    ):
        if key.kid != signing.kid:
            previous.setdefault(key.kid, key)
    return KeySet(signing=signing, previous=tuple(previous.values()))


def generate_private_key(algorithm: str) -> PrivateKey:
    """A new private key for an asymmetric algorithm: RSA 3072, EC P-256 or Ed25519."""
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_RSA_KEY_BITS)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"{algorithm} has no key pair")


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: PrivateKey | PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, PRIVATE_KEY_TYPES) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
