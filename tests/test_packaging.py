"""A wheel (`pip install .`) works outside the checkout: the migrations ship inside it."""

import os
import site
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.conftest import ROOT, free_port


def _run(args: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=True, **options)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the checkout holding the built wheel; its dependencies
    come from this run's environment (a path entry, not an install: that is slow)."""
    folder = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), str(ROOT)])
    [wheel] = folder.glob("jwt_auth_api-*.whl")
    venv = folder / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
          "-q", "--no-deps", str(wheel)])  # fmt: skip
    [packages] = (venv / "lib").glob("python3*/site-packages")
    # Appended after the venv's own site-packages, so `app` comes from the wheel.
    (packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def test_the_installed_package_imports_from_the_wheel_not_the_checkout(installed: Path) -> None:
    result = _run(
        [str(installed / "bin" / "python"), "-c", "import app; print(app.__file__)"],
        cwd=installed.parent,
    )
    assert str(installed) in result.stdout
    assert str(ROOT) not in result.stdout


def test_the_wheel_migrates_and_serves_health_from_an_empty_folder(
    installed: Path, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "TOKEN_"))},
        "DATABASE_URL": "sqlite:///./fresh.db",
        "RATE_LIMIT_STORAGE_URL": "memory://",
    }
    command = str(installed / "bin" / "jwt-auth-api")

    migrated = _run([command, "migrate"], cwd=tmp_path, env=env)
    assert "database migrated" in migrated.stdout

    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [command, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx2.get(f"http://127.0.0.1:{port}/health/ready", timeout=1)
                break
            except httpx2.TransportError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.2)
        health = httpx2.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert ready.status_code == 200, ready.text
    assert health.json() == {"status": "ok"}
    assert (tmp_path / "fresh.db").is_file()
