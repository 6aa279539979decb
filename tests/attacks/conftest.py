"""Black-box attacks on a real server: uvicorn in a subprocess, real HTTP through httpx2.

A server starts once per test module (and per configuration the module asks for) and is
shared by its tests. Each test enrols its own user with a unique email, so the tables the
`database_url` fixture empties after every test hold only that test's rows, and no throttle
count carries over; the Redis database of the run is emptied after every test too.
"""

import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import RefreshToken, User
from tests.attacks.forge import AUDIENCE, ISSUER, decoded
from tests.conftest import FAST_HASHING, STORAGE_URL, LiveServer
from tests.factories import make_user
from tests.keyfiles import private_key, private_key_file

PASSWORD = "the victim's long passphrase"
TIMEOUT_SECONDS = 30.0


@dataclass
class Target:
    """A running server and what an attacker (and the test) knows about it."""

    server: LiveServer
    http: httpx2.Client
    secret: bytes
    algorithm: str
    signing_key: PrivateKeyTypes | None = None

    @property
    def url(self) -> str:
        return self.server.url


@dataclass
class Victim:
    """A user logged in once on a target: the tokens an attacker wants to abuse."""

    id: int
    email: str
    password: str
    access_token: str
    refresh_token: str
    session_id: str
    kid: str


def start_target(database_url: str, algorithm: str = "HS256", **overrides: str) -> Target:
    secret = secrets.token_urlsafe(48)
    env = {
        "DATABASE_URL": database_url,
        "RATE_LIMIT_STORAGE_URL": STORAGE_URL,
        "TOKEN_SECRET_KEY": secret,
        "TOKEN_ISSUER": ISSUER,
        "TOKEN_AUDIENCE": AUDIENCE,
        "TOKEN_ALGORITHM": algorithm,
        # Attacks guess wrong passwords on purpose; the throttle has tests of its own.
        "IP_RATE_LIMIT": "",
        "LOGIN_MAX_FAILURES": "1000",
        **{key: str(value) for key, value in FAST_HASHING.items()},
        **overrides,
    }
    server = LiveServer(env).start()
    http = httpx2.Client(base_url=server.url, timeout=TIMEOUT_SECONDS)
    return Target(server=server, http=http, secret=secret.encode(), algorithm=algorithm)


@pytest.fixture(scope="module")
def target(migrated_database_url: str) -> Iterator[Target]:
    """The default configuration: HS256 with a secret."""
    running = start_target(migrated_database_url)
    yield running
    running.http.close()
    running.server.close()


def asymmetric_target(database_url: str, folder: Path, algorithm: str) -> Iterator[Target]:
    key_file = private_key_file(folder, algorithm)
    running = start_target(database_url, algorithm, TOKEN_PRIVATE_KEY_FILE=str(key_file))
    running.signing_key = private_key(algorithm)
    yield running
    running.http.close()
    running.server.close()


@pytest.fixture(scope="module")
def rs256_target(
    migrated_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    yield from asymmetric_target(migrated_database_url, tmp_path_factory.mktemp("rs256"), "RS256")


@pytest.fixture(scope="module")
def eddsa_target(
    migrated_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    yield from asymmetric_target(migrated_database_url, tmp_path_factory.mktemp("eddsa"), "EdDSA")


@pytest.fixture(scope="module")
def es256_target(
    migrated_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    yield from asymmetric_target(migrated_database_url, tmp_path_factory.mktemp("es256"), "ES256")


@pytest.fixture(autouse=True)
def _fresh_redis(storage_url: str) -> str:
    """Empties the run's Redis database after each test (conftest's `storage_url`)."""
    return storage_url


def enrol(db: Session, target: Target, *, password: str = PASSWORD) -> Victim:
    """A new user, logged in on `target`."""
    email = f"victim-{uuid.uuid4().hex[:12]}@example.com"
    user = make_user(db, email=email, password=password)
    response = target.http.post("/account/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    pair = response.json()
    return Victim(
        id=user.id,
        email=email,
        password=password,
        access_token=pair["access_token"],
        refresh_token=pair["refresh_token"],
        session_id=decoded(pair["access_token"], 1)["sid"],
        kid=decoded(pair["access_token"], 0)["kid"],
    )


@pytest.fixture
def victim(db: Session, target: Target) -> Victim:
    return enrol(db, target)


Rows = tuple[tuple[Any, ...], ...]


def state(db: Session) -> Rows:
    """Every user and refresh-token row as it is now in the database.

    The test's session is rolled back first: on SQLite its open read transaction would
    otherwise keep showing the rows as they were when it began.
    """
    db.rollback()
    users = db.execute(
        select(User.id, User.email, User.password_hash, User.first_name).order_by(User.id)
    ).all()
    tokens = db.execute(
        select(
            RefreshToken.id,
            RefreshToken.session_id,
            RefreshToken.spent_at,
            RefreshToken.revoked_at,
            RefreshToken.replaced_by_id,
        ).order_by(RefreshToken.id)
    ).all()
    return tuple(tuple(row) for row in users), tuple(tuple(row) for row in tokens)


def family(db: Session, session_id: str) -> list[tuple[Any, ...]]:
    """(spent_at, revoked_at) of every token of one session, oldest first."""
    db.rollback()
    rows = db.execute(
        select(RefreshToken.spent_at, RefreshToken.revoked_at)
        .where(RefreshToken.session_id == uuid.UUID(session_id))
        .order_by(RefreshToken.id)
    ).all()
    return [tuple(row) for row in rows]


class Canary:
    """An HTTP server an attack points the service at (jku, x5u, a URL as kid): it records
    every request it gets, so a test can prove the service never fetched anything."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                body = b'{"keys": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    server = Canary()
    yield server
    server.close()
