"""Key pairs for tests, generated once per run, and PEM files written where a test asks."""

from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

ASYMMETRIC = ["RS256", "ES256", "EdDSA"]


def private_key(kind: str, copy: int = 0) -> PrivateKeyTypes:
    """A private key of `kind`: an algorithm, or an unsupported type. `copy` gives another one."""
    return _generate(kind, copy)


@cache
def _generate(kind: str, copy: int) -> PrivateKeyTypes:
    del copy  # only part of the cache key
    match kind:
        case "RS256":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        case "ES256":
            return ec.generate_private_key(ec.SECP256R1())
        case "EdDSA":
            return ed25519.Ed25519PrivateKey.generate()
        case "rsa-1024":
            # A weak key, made to be refused.
            return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        case "ec-p384":
            return ec.generate_private_key(ec.SECP384R1())
        case "ed448":
            return ed448.Ed448PrivateKey.generate()
        case "x25519":
            return x25519.X25519PrivateKey.generate()
        case "dsa":
            return dsa.generate_private_key(key_size=2048)
    raise ValueError(kind)


def private_pem(key: PrivateKeyTypes, *, traditional: bool = False) -> bytes:
    form = serialization.PrivateFormat.TraditionalOpenSSL if traditional else None
    return key.private_bytes(
        serialization.Encoding.PEM,
        form or serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def private_key_file(folder: Path, kind: str, *, copy: int = 0, traditional: bool = False) -> Path:
    key = private_key(kind, copy)
    suffix = "-traditional" if traditional else ""
    return write(
        folder / f"{kind}-{copy}{suffix}.key.pem", private_pem(key, traditional=traditional)
    )


def public_key_file(folder: Path, kind: str, *, copy: int = 0) -> Path:
    return write(folder / f"{kind}-{copy}.pub.pem", public_pem(private_key(kind, copy)))
