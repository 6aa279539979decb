"""Fixtures: one migrated database per run (SQLite by default, PostgreSQL when DATABASE_URL
names one), emptied after every test, and the app served through TestClient or a real
uvicorn process."""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
from alembic.config import Config
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from alembic import command
from app.config import Settings
from app.db import sync_url
from app.main import create_app
from tests.mail.relay import Relay

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = (
    make_url(os.environ.get("DATABASE_URL") or "sqlite://").get_backend_name() == "postgresql"
)
# Cheap argon2 for speed; the production parameters are the settings' defaults.
FAST_HASHING = {
    "PASSWORD_HASH_MEMORY_KIB": 1024,
    "PASSWORD_HASH_TIME_COST": 1,
    "PASSWORD_HASH_PARALLELISM": 1,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--readme-images",
        action="store_true",
        help="let the browser tests also write the README's screenshots to docs/images/",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Multi-instance and fault tests need PostgreSQL and Redis: without both they are
    deselected, visibly, and with both configured a missing service fails them."""
    if POSTGRES and SHARED_STORAGE:
        return

    def needs_both(item: pytest.Item) -> bool:
        return any(item.get_closest_marker(name) for name in ("multi_instance", "faults"))

    deselected = [item for item in items if needs_both(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not needs_both(item)]
        config.stash[NEED_BOTH_DESELECTED] = len(deselected)


NEEDS_BOTH = (
    "need PostgreSQL and Redis: set DATABASE_URL=postgresql+psycopg://... and "
    "RATE_LIMIT_STORAGE_URL=redis://... to run them"
)
NEED_BOTH_DESELECTED = pytest.StashKey[int]()


def pytest_report_header(config: pytest.Config) -> str:
    database = "PostgreSQL" if POSTGRES else "SQLite"
    storage = "Redis" if SHARED_STORAGE else "memory://"
    header = f"database: {database}, throttle and revocation store: {storage}"
    if not (POSTGRES and SHARED_STORAGE):
        header += f"\nmulti-instance and fault tests are deselected: they {NEEDS_BOTH}"
    return header


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    count = terminalreporter.config.stash.get(NEED_BOTH_DESELECTED, 0)
    if count:
        terminalreporter.write_line(
            f"{count} multi-instance and fault tests were deselected: they {NEEDS_BOTH}"
        )


def _create_postgres_database(server_url: str) -> tuple[str, Callable[[], None]]:
    """A private database on the server DATABASE_URL names, dropped after the run."""
    url = sync_url(server_url)
    name = f"jwt_auth_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session")
def migrated_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("DATABASE_URL", "")
    if configured and make_url(configured).get_backend_name() == "postgresql":
        url, drop = _create_postgres_database(configured)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"

        def drop() -> None:
            pass

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")
    yield url
    drop()


@pytest.fixture(scope="session")
def sync_engine(migrated_database_url: str) -> Iterator[Engine]:
    engine = create_engine(sync_url(migrated_database_url))
    yield engine
    engine.dispose()


@pytest.fixture
def database_url(migrated_database_url: str, sync_engine: Engine) -> Iterator[str]:
    """The migrated database, emptied after the test, so every test starts from a clean one."""
    yield migrated_database_url
    with sync_engine.begin() as connection:
        connection.execute(text("DELETE FROM mail_outbox"))
        connection.execute(text("DELETE FROM mail_requests"))
        connection.execute(text("DELETE FROM account_links"))
        connection.execute(text("DELETE FROM ended_sessions"))
        connection.execute(text("DELETE FROM refresh_tokens"))
        connection.execute(text("DELETE FROM user_roles"))
        connection.execute(text("DELETE FROM recovery_codes"))
        connection.execute(text("DELETE FROM totp_factors"))
        connection.execute(text("DELETE FROM users"))


@pytest.fixture
def db(sync_engine: Engine, database_url: str) -> Iterator[Session]:
    """A plain SQLAlchemy session for arranging and inspecting rows; commit what you arrange."""
    with Session(sync_engine, expire_on_commit=False) as session:
        yield session


STORAGE_URL = os.environ.get("RATE_LIMIT_STORAGE_URL", "memory://")
SHARED_STORAGE = STORAGE_URL != "memory://"


@pytest.fixture
def storage_url() -> Iterator[str]:
    """RATE_LIMIT_STORAGE_URL of this run; a Redis database is emptied after each test."""
    yield STORAGE_URL
    if SHARED_STORAGE:
        client = redis.Redis.from_url(STORAGE_URL)
        client.flushdb()
        client.close()


@pytest.fixture
def settings_env(database_url: str, storage_url: str) -> dict[str, str]:
    """Settings as environment variables; tests may change them before asking for `app`."""
    return {
        "DATABASE_URL": database_url,
        "RATE_LIMIT_STORAGE_URL": storage_url,
        "TOKEN_SECRET_KEY": secrets.token_urlsafe(48),
        "DATA_ENCRYPTION_KEY": secrets.token_urlsafe(48),
        "TOKEN_ISSUER": "http://testserver",
        # Tests share one client address; the IP limit has tests of its own.
        "IP_RATE_LIMIT": "",
        **{key: str(value) for key, value in FAST_HASHING.items()},
    }


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return Settings(**settings_env)  # type: ignore[arg-type]


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


UVICORN = (sys.executable, "-m", "uvicorn", "app.main:app")
SERVE = (str(Path(sys.executable).parent / "jwt-auth-api"), "serve")


class LiveServer:
    """A server in a subprocess, configured only by the environment: `uvicorn app.main:app`
    by default, or `jwt-auth-api serve` with `command=SERVE`."""

    def __init__(
        self, env: dict[str, str], args: tuple[str, ...] = (), command: tuple[str, ...] = UVICORN
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.args = args
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None
        # Both streams go to a file: a pipe nobody reads would stall a chatty server.
        self.log = tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log")  # noqa: SIM115

    def start(self) -> "LiveServer":
        self.process = subprocess.Popen(
            [*self.command, "--port", str(self.port), *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # A group of its own: stopping it stops `--workers` children too.
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.read_log()}")
            try:
                if httpx2.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx2.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def restart(self, **env: str) -> "LiveServer":
        """Stop, then start again on the same port with `env` changed, as an operator would."""
        self.stop()
        self.env = {**self.env, **env}
        return self.start()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        # Worker processes outlive a parent that died first: never leave one serving.
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def read_log(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop_and_read_log(self) -> str:
        self.stop()
        return self.read_log()

    def close(self) -> None:
        self.stop()
        self.log.close()


@pytest.fixture
def live_server(settings_env: dict[str, str]) -> Iterator[Callable[..., LiveServer]]:
    """Start uvicorn with the test settings and overrides: `live_server(TOKEN_LEEWAY_SECONDS=5)`."""
    started: list[LiveServer] = []

    def start(*args: str, command: tuple[str, ...] = UVICORN, **overrides: Any) -> LiveServer:
        env = {**settings_env, **{key: str(value) for key, value in overrides.items()}}
        server = LiveServer(env, args, command).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def relay() -> Iterator[Relay]:
    """aiosmtpd on a free port of 127.0.0.1, plain SMTP (SMTP_SECURITY=none); shared by the
    mail tests and the account-lifecycle tests."""
    server = Relay(free_port()).start()
    yield server
    server.stop()
