"""The jwt-auth-api command, run as an operator runs it."""

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from importlib.metadata import version
from pathlib import Path

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.models import User
from app.security.keys import load_private_key, load_public_key
from tests.conftest import POSTGRES, ROOT, _create_postgres_database, free_port
from tests.factories import bearer, login, make_user

COMMAND = str(Path(sys.executable).parent / "jwt-auth-api")


def run(
    args: list[str], env: Mapping[str, str | None], stdin: str = "", cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """The command with the test run's environment plus `env` (a value None unsets)."""
    merged = {**os.environ, **env}
    return subprocess.run(
        [COMMAND, *args],
        cwd=cwd,
        env={name: value for name, value in merged.items() if value is not None},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["serve"],
        ["migrate"],
        ["create-user"],
        ["delete-user"],
        ["prune"],
        ["keys"],
        ["keys", "generate"],
        ["send-test-mail"],
    ],
    ids=str,
)
def test_every_command_has_help(args: list[str]) -> None:
    result = run([*args, "--help"], {})
    assert result.returncode == 0
    assert "usage: jwt-auth-api" in result.stdout


def test_serve_refuses_several_workers_with_memory_storage(settings_env: dict[str, str]) -> None:
    result = run(
        ["serve", "--workers", "2"], {**settings_env, "RATE_LIMIT_STORAGE_URL": "memory://"}
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr


def test_serve_refuses_the_demo_account_in_production(settings_env: dict[str, str]) -> None:
    result = run(
        ["serve", "--demo"],
        {**settings_env, "ENVIRONMENT": "production", "MAIL_BACKEND": "disabled"},
    )
    assert result.returncode == 2
    assert "--demo" in result.stderr


def test_serve_waits_for_an_unreachable_database_then_exits_1_with_one_line(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    unreachable = f"sqlite:///{tmp_path / 'no such folder' / 'auth.db'}"
    result = run(
        ["serve", "--port", str(free_port())],
        {**settings_env, "DATABASE_URL": unreachable, "DATABASE_STARTUP_TIMEOUT_SECONDS": "2"},
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 3, result.stderr  # backoff: 0.5 s, then 1 s, then the rest
    assert all("database unreachable (attempt" in line for line in lines[:-1]), result.stderr
    assert lines[-1] == (
        "error: the database is unreachable after 2 s: unable to open database file"
    )


@pytest.fixture
def demo_server(settings_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """`jwt-auth-api serve --demo`: (base URL, printed demo password)."""
    port = free_port()
    process = subprocess.Popen(
        [COMMAND, "serve", "--demo", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **settings_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"demo account: demo@example.com\s+password: (\S+)", line)
        assert match, line
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx2.get(f"{url}/health", timeout=1)
                break
            except httpx2.HTTPError:
                time.sleep(0.1)
        yield url, match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_serve_demo_prints_a_password_that_logs_in(demo_server: tuple[str, str]) -> None:
    url, password = demo_server
    login = httpx2.post(
        f"{url}/account/login", json={"email": "demo@example.com", "password": password}
    )
    assert login.status_code == 200
    token = login.json()["access_token"]
    assert httpx2.get(f"{url}/test", headers=bearer(token)).status_code == 200
    assert httpx2.get(f"{url}/test").status_code == 401


def test_create_user_reads_the_password_from_stdin(settings_env: dict[str, str]) -> None:
    password = "a brand new operator passphrase"
    result = run(
        ["create-user", "--email", "Op@Example.com", "--first-name", "Op"],
        settings_env,
        stdin=password + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr


def test_a_user_made_by_create_user_is_verified(settings_env: dict[str, str], db: Session) -> None:
    result = run(
        ["create-user", "--email", "op@example.com"],
        settings_env,
        stdin="a brand new operator passphrase\n",
    )
    assert result.returncode == 0, result.stderr
    assert db.scalar(select(User.email_verified).where(User.email == "op@example.com")) is True


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        pytest.param(["--email", "op@example.com"], "short", "password", id="weak-password"),
        pytest.param(["--email", "not-an-email"], "a long enough passphrase", "email", id="email"),
        pytest.param(
            ["--email", "op@example.com", "--phone-number", "12"],
            "a long enough passphrase",
            "phone_number",
            id="phone",
        ),
    ],
)
def test_create_user_refuses_bad_input_with_one_line(
    settings_env: dict[str, str], args: list[str], password: str, message: str
) -> None:
    result = run(["create-user", *args], settings_env, stdin=password + "\n")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# roles and delete-user


def test_create_user_with_roles_makes_an_administrator(
    settings_env: dict[str, str], client: TestClient
) -> None:
    password = "a brand new operator passphrase"
    result = run(
        ["create-user", "--email", "op@example.com", "--role", "admin", "--role", "support"],
        settings_env,
        stdin=password + "\n",
    )
    assert result.returncode == 0, result.stderr
    token = login(client, "op@example.com", password)["access_token"]
    listed = client.get("/admin/users", headers=bearer(token))
    assert listed.status_code == 200
    assert listed.json()["items"][0]["roles"] == ["admin", "support"]

    # Run again, the roles given replace the user's roles.
    again = run(
        ["create-user", "--email", "op@example.com", "--role", "support"],
        settings_env,
        stdin=password + "\n",
    )
    assert again.returncode == 0, again.stderr
    token = login(client, "op@example.com", password)["access_token"]
    assert client.get("/admin/users", headers=bearer(token)).status_code == 403


@pytest.mark.parametrize("role", ["Admin", "9lives", "a b", "x" * 33, ""])
def test_create_user_refuses_a_bad_role_with_one_line(
    settings_env: dict[str, str], role: str
) -> None:
    result = run(
        ["create-user", "--email", "op@example.com", "--role", role],
        settings_env,
        stdin="a long enough passphrase\n",
    )
    assert result.returncode == 2
    assert "--role" in result.stderr
    assert "Traceback" not in result.stderr


def test_delete_user_removes_the_user_and_ends_its_sessions(
    settings_env: dict[str, str], client: TestClient, db: Session
) -> None:
    make_user(db)
    pair = login(client)

    result = run(["delete-user", "--email", "ADA@example.com"], settings_env)

    assert result.returncode == 0, result.stderr
    assert "ada@example.com" in result.stdout
    assert '"event":"user_deleted"' in result.stderr
    refresh = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401
    wrong = client.post("/account/login", json={"email": "ada@example.com", "password": "x" * 20})
    assert wrong.status_code == 400
    assert db.scalar(select(func.count()).select_from(User)) == 0


def test_delete_user_of_an_unknown_email_fails_with_one_line(
    settings_env: dict[str, str],
) -> None:
    result = run(["delete-user", "--email", "nobody@example.com"], settings_env)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no user nobody@example.com"


# keys generate


def key_files(folder: Path) -> tuple[Path, Path]:
    (private,) = folder.glob("*.private.pem")
    (public,) = folder.glob("*.public.pem")
    return private, public


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_keys_generate_writes_a_key_pair_of_the_configured_type_with_mode_0600(
    tmp_path: Path, algorithm: str
) -> None:
    result = run(["keys", "generate", "--out", str(tmp_path)], {"TOKEN_ALGORITHM": algorithm})

    assert result.returncode == 0, result.stderr
    private, public = key_files(tmp_path)
    for path in (private, public):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    signing = load_private_key(private, algorithm)
    assert load_public_key(public).kid == signing.kid
    assert signing.kid in result.stdout
    assert f"TOKEN_ALGORITHM={algorithm}" in result.stdout.splitlines()
    assert f"TOKEN_PRIVATE_KEY_FILE={private.resolve()}" in result.stdout.splitlines()
    assert "PRIVATE KEY" not in result.stdout


def test_keys_generate_makes_rsa_keys_of_3072_bits_at_the_paths_given(tmp_path: Path) -> None:
    private, public = tmp_path / "new" / "signing.pem", tmp_path / "new" / "signing.pub"

    result = run(
        [
            "keys",
            "generate",
            "--algorithm",
            "RS256",
            "--private",
            str(private),
            "--public",
            str(public),
        ],
        {"TOKEN_ALGORITHM": "EdDSA"},
    )

    assert result.returncode == 0, result.stderr
    key = load_private_key(private, "RS256").public_key
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 3072
    assert load_public_key(public).algorithm == "RS256"


def test_keys_generate_never_overwrites_a_key_file(tmp_path: Path) -> None:
    existing = tmp_path / "signing.pem"
    existing.write_text("keep me")

    result = run(
        [
            "keys",
            "generate",
            "--algorithm",
            "ES256",
            "--private",
            str(existing),
            "--out",
            str(tmp_path),
        ],
        {},
    )

    assert result.returncode == 2
    assert "never overwritten" in result.stderr
    assert existing.read_text() == "keep me"
    assert list(tmp_path.glob("*.public.pem")) == []


def test_keys_generate_asks_for_an_algorithm_when_hs256_is_configured(tmp_path: Path) -> None:
    result = run(["keys", "generate", "--out", str(tmp_path)], {"TOKEN_ALGORITHM": "HS256"})

    assert result.returncode == 2
    assert "--algorithm" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_version_names_the_installed_version() -> None:
    result = run(["--version"], {})
    assert result.returncode == 0
    assert result.stdout.strip() == f"jwt-auth-api {version('jwt-auth-api')}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--port", "83544"], "83544 is out of range (from 1 to 65535)", id="port-high"
        ),
        pytest.param(["--port", "0"], "0 is out of range (from 1 to 65535)", id="port-zero"),
        pytest.param(["--port", "-1"], "'-1' is not a whole number", id="port-negative"),
        pytest.param(["--workers", "0"], "0 is out of range (at least 1)", id="no-workers"),
    ],
)
def test_serve_refuses_a_port_or_worker_count_out_of_range(
    settings_env: dict[str, str], args: list[str], message: str
) -> None:
    result = run(["serve", *args], settings_env)
    assert result.returncode == 2
    assert message in result.stderr


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_migrate_creates_the_schema_from_any_directory(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "TOKEN_SECRET_KEY": None,
    }

    migrated = run(["migrate"], env, cwd=tmp_path)
    again = run(["migrate"], env, cwd=tmp_path)
    # Migrating needs no token secret, so none is generated beside the database.
    assert not (tmp_path / ".token_secret_key").exists()
    created = run(
        ["create-user", "--email", "op@example.com"], env, "an operator passphrase", cwd=tmp_path
    )

    assert migrated.returncode == 0, migrated.stderr
    assert "database migrated" in migrated.stdout
    assert again.returncode == 0, again.stderr
    assert created.returncode == 0, created.stderr


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        pytest.param(
            ["create-user", "--email", "op@example.com"], "an operator passphrase", id="create-user"
        ),
        pytest.param(["prune"], "", id="prune"),
    ],
)
def test_a_command_on_an_unmigrated_database_says_to_migrate_in_one_line(
    settings_env: dict[str, str], tmp_path: Path, args: list[str], stdin: str
) -> None:
    env = {**settings_env, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}

    result = run(args, env, stdin)

    assert result.returncode == 1
    assert _one_line(result) == "error: the database is not migrated; run `jwt-auth-api migrate`"


def _missing_database(migrated_database_url: str) -> str:
    if POSTGRES:
        url = make_url(migrated_database_url).set(database="jwt_auth_no_such_database")
        return url.render_as_string(hide_password=False)
    return "sqlite:////no-such-folder/jwt_auth.db"


@pytest.mark.parametrize("command", [["migrate"], ["serve"], ["prune"]], ids=str)
@pytest.mark.parametrize(
    "case", ["not-a-url", "postgres-scheme", "driver-typo", "closed-port", "missing-database"]
)
def test_a_bad_database_url_stops_every_command_with_one_line(
    settings_env: dict[str, str],
    migrated_database_url: str,
    tmp_path: Path,
    command: list[str],
    case: str,
) -> None:
    url = {
        "not-a-url": "not-a-url",
        "postgres-scheme": "postgres://app:pw@127.0.0.1/app",
        "driver-typo": "postgresql+pyscopg://app:pw@127.0.0.1/app",
        "closed-port": f"postgresql+psycopg://app:pw@127.0.0.1:{free_port()}/app",
        "missing-database": _missing_database(migrated_database_url),
    }[case]

    env = {**settings_env, "DATABASE_URL": url, "DATABASE_STARTUP_TIMEOUT_SECONDS": "1"}
    result = run(command, env, cwd=tmp_path)

    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert ":pw@" not in result.stderr
    *log_lines, line = result.stderr.strip().splitlines()
    if command == ["serve"] and case in ("closed-port", "missing-database"):
        # serve waits for a database that may be starting: one log line per attempt, then
        # the one line that names the problem.
        assert all(json.loads(log_line)["level"] == "warning" for log_line in log_lines)
        assert line.startswith("error: the database is unreachable after 1 s: "), line
    else:
        assert not log_lines, result.stderr
        assert line.startswith("configuration error: DATABASE_URL"), line


@pytest.mark.multi_instance
def test_instances_migrating_together_migrate_once(migrated_database_url: str) -> None:
    # Without the advisory lock, the second CREATE TABLE of two racing migrations fails.
    url, drop = _create_postgres_database(migrated_database_url)
    env = {**os.environ, "DATABASE_URL": url}
    try:
        processes = [
            subprocess.Popen(
                [COMMAND, "migrate"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outcomes = [(process.wait(timeout=120), process.communicate()[1]) for process in processes]
    finally:
        drop()
    assert outcomes == [(0, "")] * 3
