"""The app is built by create_app(settings); importing a module of the service does nothing."""

import os
import subprocess
import sys
from pathlib import Path

import httpx2

from tests.conftest import LiveServer


def test_importing_the_app_reads_no_setting_and_writes_no_file(tmp_path: Path) -> None:
    # Settings that would stop any start-up: importing must not even read them.
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": "not-a-url",
        "TOKEN_SECRET_KEY": "short",
        "TOKEN_PRIVATE_KEY_FILE": str(tmp_path / "missing.pem"),
    }
    subprocess.run(
        [sys.executable, "-c", "import app.main, app.cli, app.api.deps"],
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert list(tmp_path.iterdir()) == []


def test_uvicorn_builds_the_same_app_through_the_factory(settings_env: dict[str, str]) -> None:
    command = (sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app")
    server = LiveServer(settings_env, command=command).start()
    try:
        response = httpx2.get(f"{server.url}/test")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="http://testserver"'
    finally:
        server.close()
