"""A private redis-server a test may stop, restart empty and flush: `redis-server --port N
--save ''` (nothing on disk, so a restart comes back empty, as a cache node would)."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import redis

# Ports of this test suite's private servers; each one binds the first free port.
PORTS = range(16300, 16350)


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.folder = tempfile.mkdtemp(prefix="redis-")

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:  # pragma: no cover - the CI image has it
            pytest.fail("redis-server is not installed")
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        options += ["--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", self.folder]
        self.process = subprocess.Popen(
            [binary, *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited")
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart_empty(self) -> None:
        """Killed and started again: with nothing on disk it comes back empty."""
        self.stop()
        self.start()

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private, empty redis-server for one test, on a port of PORTS."""
    # Under xdist each worker starts at its own offset, so parallel workers rarely collide.
    offset = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    for port in [*PORTS[offset * 5 :], *PORTS[: offset * 5]]:
        if _port_is_free(port):
            server = RedisServer(port)
            break
    else:  # pragma: no cover
        pytest.fail("no free port for a private redis-server")
    try:
        yield server.start()
    finally:
        server.close()
