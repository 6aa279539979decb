"""examples/resource_server.py beside a real service: it validates our access tokens knowing
only the JWKS URL, before, during and after a key rotation."""

import base64
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.orm import Session

from tests.conftest import LiveServer
from tests.factories import bearer, login, make_user
from tests.keyfiles import private_key_file, public_key_file

JWKS_CACHE_SECONDS = 1
RESOURCE_SERVER = (sys.executable, "-m", "uvicorn", "resource_server:app")


@pytest.fixture
def resource_server() -> Iterator[Callable[[LiveServer], LiveServer]]:
    """Start the example with uvicorn on a free port, trusting the keys `service` publishes."""
    started: list[LiveServer] = []

    def start(service: LiveServer) -> LiveServer:
        env = {
            "JWKS_URL": f"{service.url}/.well-known/jwks.json",
            "TOKEN_ISSUER": service.env["TOKEN_ISSUER"],
            "TOKEN_AUDIENCE": "API",
            "JWKS_CACHE_SECONDS": str(JWKS_CACHE_SECONDS),
            # Fetch the set at once on an unknown kid; the default waits 30 s between fetches.
            "JWKS_REFETCH_COOLDOWN_SECONDS": "0",
        }
        server = LiveServer(env, ("--app-dir", "examples"), command=RESOURCE_SERVER)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.close()


def hello(example: LiveServer, token: str) -> httpx2.Response:
    return httpx2.get(f"{example.url}/hello", headers=bearer(token), timeout=10)


def kid_of(token: str) -> str:
    segment = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))["kid"]
    return kid


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def published_public_pem(service: LiveServer) -> bytes:
    """What anyone can fetch: the service's current public key, turned into PEM."""
    (jwk,) = httpx2.get(f"{service.url}/.well-known/jwks.json").json()["keys"]
    public = jwt.PyJWK(jwk).key
    assert isinstance(public, rsa.RSAPublicKey)
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def hs256_forgery(token: str, secret: bytes) -> str:
    """The claims of `token`, re-signed with HS256 and `secret` under the same kid."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": kid_of(token)}
    signing_input = f"{b64url(json.dumps(header).encode())}.{token.split('.')[1]}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def test_the_example_validates_tokens_from_the_jwks_url_across_a_key_rotation(
    live_server: Callable[..., LiveServer],
    resource_server: Callable[[LiveServer], LiveServer],
    db: Session,
    tmp_path: Path,
) -> None:
    user = make_user(db)
    old_private = private_key_file(tmp_path, "RS256")
    new_private = private_key_file(tmp_path, "RS256", copy=1)
    service = live_server(TOKEN_ALGORITHM="RS256", TOKEN_PRIVATE_KEY_FILE=str(old_private))
    example = resource_server(service)
    with httpx2.Client(base_url=service.url) as api:
        old_token = login(api)["access_token"]

    # Before the rotation.
    accepted = hello(example, old_token)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"sub": str(user.id), "email": "ada@example.com"}
    missing = httpx2.get(f"{example.url}/hello")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    # RFC 8725 §2.1: the public key from the JWKS used as an HMAC secret.
    forged = hello(example, hs256_forgery(old_token, published_public_pem(service)))
    assert forged.status_code == 401
    assert 'error_description="algorithm not allowed"' in forged.headers["WWW-Authenticate"]

    # Rotation: a new signing key, the old public key kept for the tokens it signed.
    service.restart(
        TOKEN_PRIVATE_KEY_FILE=str(new_private),
        TOKEN_PREVIOUS_PUBLIC_KEY_FILES=str(public_key_file(tmp_path, "RS256")),
    )
    with httpx2.Client(base_url=service.url) as api:
        new_token = login(api)["access_token"]
        assert api.get("/test", headers=bearer(old_token)).status_code == 200
        assert api.get("/test", headers=bearer(new_token)).status_code == 200
    assert kid_of(new_token) != kid_of(old_token)
    assert hello(example, old_token).status_code == 200
    # An unknown kid makes the example fetch the key set again.
    assert hello(example, new_token).status_code == 200

    # Once the old tokens have expired, the old key goes; whoever still holds one is refused.
    service.restart(TOKEN_PREVIOUS_PUBLIC_KEY_FILES="")
    with httpx2.Client(base_url=service.url) as api:
        assert api.get("/test", headers=bearer(old_token)).status_code == 401
        assert api.get("/test", headers=bearer(new_token)).status_code == 200
    time.sleep(JWKS_CACHE_SECONDS + 0.1)
    removed = hello(example, old_token)
    assert removed.status_code == 401
    assert 'error_description="unknown or missing key id"' in removed.headers["WWW-Authenticate"]
    assert hello(example, new_token).status_code == 200


def test_the_examples_admin_route_needs_the_admin_role_in_the_token(
    live_server: Callable[..., LiveServer],
    resource_server: Callable[[LiveServer], LiveServer],
    db: Session,
    tmp_path: Path,
) -> None:
    root = make_user(db, email="root@example.com", roles=["admin"])
    make_user(db)
    service = live_server(
        TOKEN_ALGORITHM="RS256", TOKEN_PRIVATE_KEY_FILE=str(private_key_file(tmp_path, "RS256"))
    )
    example = resource_server(service)
    with httpx2.Client(base_url=service.url) as api:
        admin_token = login(api, "root@example.com")["access_token"]
        user_token = login(api)["access_token"]

    allowed = httpx2.get(f"{example.url}/admin/hello", headers=bearer(admin_token), timeout=10)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json() == {"sub": str(root.id), "roles": ["admin"]}
    refused = httpx2.get(f"{example.url}/admin/hello", headers=bearer(user_token), timeout=10)
    assert refused.status_code == 403
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'
    assert hello(example, user_token).status_code == 200
