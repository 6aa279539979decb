"""The jwt-auth-api command, run as an operator runs it."""

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.factories import bearer

COMMAND = str(Path(sys.executable).parent / "jwt-auth-api")


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("args", [[], ["serve"], ["create-user"], ["prune"]], ids=str)
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
    result = run(["serve", "--demo"], {**settings_env, "ENVIRONMENT": "production"})
    assert result.returncode == 2
    assert "--demo" in result.stderr


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
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url, match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_serve_demo_prints_a_password_that_logs_in(demo_server: tuple[str, str]) -> None:
    url, password = demo_server
    login = httpx.post(
        f"{url}/account/login", json={"email": "demo@example.com", "password": password}
    )
    assert login.status_code == 200
    token = login.json()["access_token"]
    assert httpx.get(f"{url}/test", headers=bearer(token)).status_code == 200
    assert httpx.get(f"{url}/test").status_code == 401


def test_create_user_reads_the_password_from_stdin(settings_env: dict[str, str]) -> None:
    password = "a brand new operator passphrase"
    result = run(
        ["create-user", "--email", "Op@Example.com", "--first-name", "Op"],
        settings_env,
        stdin=password + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr


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
