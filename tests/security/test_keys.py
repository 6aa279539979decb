"""Keys: loading PEM files, one algorithm per key, kids (RFC 7638), public JWKs, generation."""

import base64
import json
import os
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from app.security.keys import (
    GENERATED_RSA_KEY_BITS,
    Key,
    KeySet,
    KeySettingError,
    generate_private_key,
    hmac_key,
    hmac_kid,
    jwk_thumbprint,
    load_keys,
    load_private_key,
    load_public_key,
    public_jwk,
)
from tests.keyfiles import (
    ASYMMETRIC,
    private_key,
    private_key_file,
    private_pem,
    public_key_file,
    public_pem,
    write,
)

SECRET = b"a test secret that is longer than thirty-two bytes"
OTHER_SECRET = b"another secret, also longer than thirty-two bytes"


def b64url_int(segment: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def key_setting_error(*args: object, **kwargs: object) -> KeySettingError:
    """The error `load_keys(*args, **kwargs)` raises; fails the test if it loads."""
    with pytest.raises(KeySettingError) as raised:
        load_keys(*args, **kwargs)  # type: ignore[arg-type]
    return raised.value


# Kids: RFC 7638 thumbprints


def test_the_rsa_thumbprint_matches_the_example_of_rfc_7638() -> None:
    # RFC 7638 §3.1.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
        "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQ"
        "Fh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    public = rsa.RSAPublicNumbers(e=65537, n=b64url_int(n)).public_key()

    assert jwk_thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_the_ed25519_thumbprint_matches_the_example_of_rfc_8037() -> None:
    # RFC 8037 Appendix A.3.
    x = base64.urlsafe_b64decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    public = ed25519.Ed25519PublicKey.from_public_bytes(x)

    assert jwk_thumbprint(public) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_the_kid_of_a_key_pair_is_the_same_from_its_private_and_its_public_file(
    tmp_path: Path, algorithm: str
) -> None:
    signing = load_private_key(private_key_file(tmp_path, algorithm), algorithm)
    previous = load_public_key(public_key_file(tmp_path, algorithm))

    assert signing.kid == previous.kid
    assert len(signing.kid) == 43  # base64url of a SHA-256 digest, unpadded
    assert signing.kid != load_public_key(public_key_file(tmp_path, algorithm, copy=1)).kid


# Loading: the key type decides the algorithm


@pytest.mark.parametrize(
    ("algorithm", "traditional", "key_type"),
    [
        pytest.param("RS256", False, rsa.RSAPrivateKey, id="RS256-pkcs8"),
        pytest.param("RS256", True, rsa.RSAPrivateKey, id="RS256-traditional"),
        pytest.param("ES256", False, ec.EllipticCurvePrivateKey, id="ES256-pkcs8"),
        pytest.param("ES256", True, ec.EllipticCurvePrivateKey, id="ES256-traditional"),
        pytest.param("EdDSA", False, ed25519.Ed25519PrivateKey, id="EdDSA-pkcs8"),
    ],
)
def test_a_private_key_file_in_either_pem_form_loads_as_the_signing_key(
    tmp_path: Path, algorithm: str, traditional: bool, key_type: type
) -> None:
    path = private_key_file(tmp_path, algorithm, traditional=traditional)

    key = load_private_key(path, algorithm)

    assert key.algorithm == algorithm
    assert isinstance(key.material, key_type)
    assert key.public_key is not None
    assert key.kid == jwk_thumbprint(key.public_key)


@pytest.mark.parametrize(
    ("kind", "algorithm"), [("RS256", "RS256"), ("ES256", "ES256"), ("EdDSA", "EdDSA")], ids=str
)
def test_a_public_key_file_loads_with_the_one_algorithm_of_its_type(
    tmp_path: Path, kind: str, algorithm: str
) -> None:
    key = load_public_key(public_key_file(tmp_path, kind))

    assert key.algorithm == algorithm
    assert key.public_key is key.material


@pytest.mark.parametrize(
    ("kind", "configured"),
    [
        ("ES256", "RS256"),
        ("EdDSA", "RS256"),
        ("RS256", "ES256"),
        ("EdDSA", "ES256"),
        ("RS256", "EdDSA"),
        ("ES256", "EdDSA"),
    ],
    ids=[
        "ec-key-for-RS256",
        "ed25519-key-for-RS256",
        "rsa-key-for-ES256",
        "ed25519-key-for-ES256",
        "rsa-key-for-EdDSA",
        "ec-key-for-EdDSA",
    ],
)
def test_a_private_key_of_another_type_than_the_algorithm_is_refused(
    tmp_path: Path, kind: str, configured: str
) -> None:
    path = private_key_file(tmp_path, kind)

    with pytest.raises(KeySettingError) as raised:
        load_private_key(path, configured)

    assert raised.value.variable == "TOKEN_PRIVATE_KEY_FILE"
    assert str(path) in raised.value.reason
    assert f"signs {kind}" in raised.value.reason
    assert f"TOKEN_ALGORITHM is {configured}" in raised.value.reason


@pytest.mark.parametrize(
    ("kind", "described"),
    [
        ("rsa-1024", "1024-bit RSA key; RS256 needs at least 2048 bits"),
        ("ec-p384", "EC P-384 key"),
        ("ed448", "Ed448"),
        ("x25519", "X25519"),
        ("dsa", "DSA"),
    ],
    ids=["rsa-1024", "ec-p384", "ed448", "x25519", "dsa"],
)
def test_an_unsupported_or_weak_key_is_refused_in_either_file(
    tmp_path: Path, kind: str, described: str
) -> None:
    private_path = write(tmp_path / "key.pem", private_pem(private_key(kind)))
    public_path = write(tmp_path / "pub.pem", public_pem(private_key(kind)))
    algorithm = "RS256" if kind.startswith("rsa") else "ES256"

    with pytest.raises(KeySettingError) as private_error:
        load_private_key(private_path, algorithm)
    with pytest.raises(KeySettingError) as public_error:
        load_public_key(public_path)

    assert described in private_error.value.reason
    assert described in public_error.value.reason
    assert public_error.value.variable == "TOKEN_PREVIOUS_PUBLIC_KEY_FILES"


def test_a_public_key_where_the_private_key_belongs_is_refused(tmp_path: Path) -> None:
    path = public_key_file(tmp_path, "RS256")

    with pytest.raises(KeySettingError) as raised:
        load_private_key(path, "RS256")

    assert raised.value.reason == f"{path} holds a public key; a private key is expected"


def test_a_private_key_where_a_previous_public_key_belongs_is_refused(tmp_path: Path) -> None:
    # Keeping an old private key around is what a rotation should end; say how to get the public.
    path = private_key_file(tmp_path, "ES256")

    with pytest.raises(KeySettingError) as raised:
        load_public_key(path)

    assert raised.value.variable == "TOKEN_PREVIOUS_PUBLIC_KEY_FILES"
    assert "holds a private key" in raised.value.reason
    assert "-pubout" in raised.value.reason


BAD_FILES = {
    "garbage": b"this is not a key\n",
    "empty": b"",
    "binary": os.urandom(64),
    "truncated-pem": private_pem(private_key("ES256"))[:80],
    "certificate-header": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_file_that_is_no_pem_key_is_refused_without_quoting_it(
    tmp_path: Path, content: bytes
) -> None:
    path = write(tmp_path / "bad.pem", content)

    with pytest.raises(KeySettingError) as private_error:
        load_private_key(path, "RS256")
    with pytest.raises(KeySettingError) as public_error:
        load_public_key(path)

    assert private_error.value.reason == f"{path} is not a PEM private key (PKCS#8 or traditional)"
    assert public_error.value.reason == f"{path} is not a PEM public key"


def test_an_encrypted_private_key_is_refused(tmp_path: Path) -> None:
    data = private_key("EdDSA").private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    path = write(tmp_path / "encrypted.pem", data)

    with pytest.raises(KeySettingError) as raised:
        load_private_key(path, "EdDSA")

    assert "is encrypted" in raised.value.reason


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = write(tmp_path / "huge.pem", b"A" * (1024 * 1024))

    with pytest.raises(KeySettingError) as raised:
        load_private_key(path, "RS256")

    assert "larger than a PEM key can be" in raised.value.reason


@pytest.mark.parametrize("missing", ["missing-file", "folder"], ids=str)
def test_a_missing_or_unreadable_file_is_refused_naming_its_path(
    tmp_path: Path, missing: str
) -> None:
    # A folder is unreadable as a file even for root, who reads any file whatever its mode.
    path = tmp_path / "nowhere.pem" if missing == "missing-file" else tmp_path

    with pytest.raises(KeySettingError) as raised:
        load_private_key(path, "RS256")

    assert raised.value.variable == "TOKEN_PRIVATE_KEY_FILE"
    assert raised.value.reason.startswith(f"cannot read {path}: ")


# load_keys: the current key, and the previous ones


def test_hs256_signs_with_the_secret_named_by_its_hmac_kid() -> None:
    keys = load_keys(algorithm="HS256", secret_key=SECRET, private_key_file=None)

    assert keys.signing.algorithm == "HS256"
    assert keys.signing.kid == hmac_kid(SECRET)
    assert keys.signing.material == SECRET
    assert keys.previous == ()


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_an_asymmetric_algorithm_signs_with_the_private_key_file_and_needs_no_secret(
    tmp_path: Path, algorithm: str
) -> None:
    keys = load_keys(
        algorithm=algorithm,
        secret_key=None,
        private_key_file=private_key_file(tmp_path, algorithm),
    )

    assert keys.signing.algorithm == algorithm
    assert keys.signing.public_key is not None


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_an_asymmetric_algorithm_without_a_private_key_file_is_refused(algorithm: str) -> None:
    error = key_setting_error(algorithm=algorithm, secret_key=SECRET, private_key_file=None)

    assert error.variable == "TOKEN_PRIVATE_KEY_FILE"
    assert f"is required when TOKEN_ALGORITHM is {algorithm}" in error.reason


def test_hs256_without_a_secret_is_refused() -> None:
    error = key_setting_error(algorithm="HS256", secret_key=None, private_key_file=None)

    assert error.variable == "TOKEN_SECRET_KEY"


def test_hs256_with_a_private_key_file_is_refused_as_a_half_made_switch(tmp_path: Path) -> None:
    error = key_setting_error(
        algorithm="HS256", secret_key=SECRET, private_key_file=private_key_file(tmp_path, "RS256")
    )

    assert error.variable == "TOKEN_PRIVATE_KEY_FILE"
    assert "TOKEN_ALGORITHM is HS256" in error.reason


def test_previous_keys_of_every_type_keep_their_own_algorithm_and_kid(tmp_path: Path) -> None:
    keys = load_keys(
        algorithm="RS256",
        secret_key=None,
        private_key_file=private_key_file(tmp_path, "RS256"),
        previous_public_key_files=[
            public_key_file(tmp_path, "RS256", copy=1),
            public_key_file(tmp_path, "ES256"),
            public_key_file(tmp_path, "EdDSA"),
        ],
        previous_secret_keys=[SECRET, OTHER_SECRET],
    )

    assert [key.algorithm for key in keys.previous] == ["RS256", "ES256", "EdDSA", "HS256", "HS256"]
    assert keys.previous[3].kid == hmac_kid(SECRET)
    assert keys.previous[4].kid == hmac_kid(OTHER_SECRET)
    assert len({keys.signing.kid, *(key.kid for key in keys.previous)}) == 6


def test_the_current_key_listed_again_as_a_previous_one_is_kept_once(tmp_path: Path) -> None:
    keys = load_keys(
        algorithm="ES256",
        secret_key=None,
        private_key_file=private_key_file(tmp_path, "ES256"),
        previous_public_key_files=[public_key_file(tmp_path, "ES256")] * 2,
        previous_secret_keys=[SECRET, SECRET],
    )

    assert [key.kid for key in keys.previous] == [hmac_kid(SECRET)]


def test_a_bad_previous_key_file_is_refused_naming_its_variable(tmp_path: Path) -> None:
    error = key_setting_error(
        algorithm="HS256",
        secret_key=SECRET,
        private_key_file=None,
        previous_public_key_files=[write(tmp_path / "bad.pem", b"nonsense")],
    )

    assert error.variable == "TOKEN_PREVIOUS_PUBLIC_KEY_FILES"


# Public JWKs


@pytest.mark.parametrize(
    ("algorithm", "members"),
    [
        ("RS256", {"kty", "n", "e"}),
        ("ES256", {"kty", "crv", "x", "y"}),
        ("EdDSA", {"kty", "crv", "x"}),
    ],
    ids=["RS256", "ES256", "EdDSA"],
)
def test_a_public_jwk_holds_the_public_members_its_kid_alg_and_use_only(
    tmp_path: Path, algorithm: str, members: set[str]
) -> None:
    key = load_private_key(private_key_file(tmp_path, algorithm), algorithm)

    jwk = public_jwk(key)

    assert jwk is not None
    assert set(jwk) == members | {"kid", "alg", "use"}
    assert jwk["kid"] == key.kid
    assert jwk["alg"] == algorithm
    assert jwk["use"] == "sig"
    assert "d" not in jwk
    parsed = jwt.PyJWK(dict(jwk))
    assert parsed.algorithm_name == algorithm
    assert key.public_key is not None
    assert public_pem_of(parsed.key) == public_pem_of(key.public_key)


def public_pem_of(key: object) -> bytes:
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_the_ec_jwk_names_the_p256_curve_and_pads_coordinates_to_32_bytes(
    tmp_path: Path,
) -> None:
    jwk = public_jwk(load_public_key(public_key_file(tmp_path, "ES256")))

    assert jwk is not None
    assert jwk["crv"] == "P-256"
    assert len(base64.urlsafe_b64decode(jwk["x"] + "=")) == 32
    assert len(base64.urlsafe_b64decode(jwk["y"] + "=")) == 32


def test_an_hmac_secret_has_no_public_jwk_and_is_never_published(tmp_path: Path) -> None:
    keys = KeySet(
        signing=hmac_key(SECRET),
        previous=(hmac_key(OTHER_SECRET), load_public_key(public_key_file(tmp_path, "EdDSA"))),
    )

    assert public_jwk(hmac_key(SECRET)) is None
    assert [jwk["alg"] for jwk in keys.public_jwks] == ["EdDSA"]
    assert SECRET.decode() not in json.dumps(keys.public_jwks)


def test_a_key_never_prints_its_material() -> None:
    key = Key(kid="kid", algorithm="HS256", material=SECRET)

    assert repr(key) == "Key(kid='kid', algorithm='HS256')"
    assert SECRET.decode() not in f"{key} {key!r}"


def test_a_public_key_cannot_sign(tmp_path: Path) -> None:
    key = load_public_key(public_key_file(tmp_path, "RS256"))

    with pytest.raises(TypeError):
        _ = key.signing_material


# Generation


@pytest.mark.parametrize(
    ("algorithm", "key_type"),
    [
        ("RS256", rsa.RSAPrivateKey),
        ("ES256", ec.EllipticCurvePrivateKey),
        ("EdDSA", ed25519.Ed25519PrivateKey),
    ],
    ids=["RS256", "ES256", "EdDSA"],
)
def test_a_generated_key_has_the_type_the_algorithm_needs(algorithm: str, key_type: type) -> None:
    key = generate_private_key(algorithm)

    assert isinstance(key, key_type)
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size == GENERATED_RSA_KEY_BITS == 3072
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert isinstance(key.curve, ec.SECP256R1)


def test_no_key_pair_is_generated_for_hs256() -> None:
    with pytest.raises(ValueError, match="HS256"):
        generate_private_key("HS256")
