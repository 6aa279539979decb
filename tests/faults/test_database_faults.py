"""PostgreSQL cut, frozen, or down at start-up, a login flood and a drain, against a real
server whose database link runs through a proxy the test controls."""

import asyncio
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import httpx2
import pytest
from sqlalchemy.orm import Session

from tests.conftest import ROOT, SERVE, LiveServer, free_port
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user
from tests.faults.proxy import FaultProxy

pytestmark = pytest.mark.faults

RIGHT = {"email": "ada@example.com", "password": DEFAULT_PASSWORD}
WRONG = {"email": "ada@example.com", "password": "not the password at all"}
# Outages last a few seconds; every bound below is a liveness bound with generous slack.
OUTAGE_SECONDS = 2.5
TIMEOUT = {"DATABASE_TIMEOUT_SECONDS": "1"}
SLACK_SECONDS = 10.0


@pytest.fixture
def proxy(database_proxy: tuple[FaultProxy, str]) -> FaultProxy:
    return database_proxy[0]


@pytest.fixture
def proxied_url(database_proxy: tuple[FaultProxy, str]) -> str:
    return database_proxy[1]


class Connection:
    """One keep-alive connection that never reconnects silently, as a client's would be."""

    def __init__(self, server: LiveServer) -> None:
        self._http = http.client.HTTPConnection("127.0.0.1", server.port, timeout=SLACK_SECONDS)
        self._http.connect()
        self._socket = self._http.sock

    def request(self, method: str, path: str, body: str = "") -> tuple[int, dict[str, str], bytes]:
        self._http.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = self._http.getresponse()
        data = response.read()
        # The same socket still: the server neither closed it nor made us open another.
        assert self._http.sock is self._socket, "the connection was closed"
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        self._http.close()


def wait_until(check: Callable[[], bool], seconds: float = SLACK_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the liveness bound"
        time.sleep(0.2)


def test_a_cut_database_answers_503_keeps_connections_and_locks_nobody_out(
    live_server: Callable[..., LiveServer], db: Session, proxy: FaultProxy, proxied_url: str
) -> None:
    make_user(db)
    server = live_server(DATABASE_URL=proxied_url, LOGIN_MAX_FAILURES="3", **TIMEOUT)
    with httpx2.Client(base_url=server.url, timeout=SLACK_SECONDS) as client:
        pair = login(client)
    connection = Connection(server)

    proxy.cut()
    outage_ends = time.monotonic() + OUTAGE_SECONDS
    answered = 0
    while time.monotonic() < outage_ends or answered < 4:
        # A bearer check reads no row: it goes on.
        with httpx2.Client(base_url=server.url, timeout=SLACK_SECONDS) as client:
            assert client.get("/test", headers=bearer(pair["access_token"])).status_code == 200
        for path, body in (
            ("/account/login", RIGHT),
            ("/account/login", WRONG),
            ("/account/refresh", {"refresh_token": pair["refresh_token"]}),
        ):
            status, headers, data = connection.request("POST", path, json.dumps(body))
            assert status == 503, data
            assert int(headers["retry-after"]) >= 1
            assert b"/problems/service-unavailable" in data
            # The next request on the same connection is answered.
            assert connection.request("GET", "/health")[0] == 200
        answered += 1
    proxy.restore()

    # More 503s than LOGIN_MAX_FAILURES, yet the right password logs in at once: no 429.
    with httpx2.Client(base_url=server.url, timeout=SLACK_SECONDS) as client:
        response = client.post("/account/login", json=RIGHT)
        assert response.status_code == 200, response.text
        # No refresh was spent by a 503: the pair the client holds still works.
        refreshed = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
    connection.close()


def test_a_frozen_database_answers_503_after_the_timeout_and_recovers_without_restart(
    live_server: Callable[..., LiveServer], db: Session, proxy: FaultProxy, proxied_url: str
) -> None:
    make_user(db)
    server = live_server(DATABASE_URL=proxied_url, **TIMEOUT)
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        pair = login(client)

        proxy.freeze()
        started = time.monotonic()
        frozen_login = client.post("/account/login", json=RIGHT)
        frozen_refresh = client.post(
            "/account/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        elapsed = time.monotonic() - started
        time.sleep(max(0.0, OUTAGE_SECONDS - elapsed))
        proxy.restore()

        for response in (frozen_login, frozen_refresh):
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) >= 1
        # Two requests, each about DATABASE_TIMEOUT_SECONDS, not the length of the freeze.
        assert elapsed < 2 * 1 + SLACK_SECONDS
        assert client.get("/health").status_code == 200

        def logs_in() -> bool:
            return client.post("/account/login", json=RIGHT).status_code == 200

        wait_until(logs_in)
        refreshed = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text


def test_sigterm_with_a_frozen_database_exits_within_the_drain_and_ten_seconds(
    live_server: Callable[..., LiveServer], db: Session, proxy: FaultProxy, proxied_url: str
) -> None:
    make_user(db)
    drain = 2
    server = live_server(
        command=SERVE, DATABASE_URL=proxied_url, SHUTDOWN_DRAIN_SECONDS=str(drain), **TIMEOUT
    )
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        login(client)
    proxy.freeze()
    in_flight = threading.Thread(
        target=lambda: httpx2.post(f"{server.url}/account/login", json=RIGHT, timeout=30)
    )
    in_flight.start()
    assert server.process is not None
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=drain + 10 + SLACK_SECONDS)
    finally:
        proxy.restore()
        in_flight.join()
    assert time.monotonic() - started < drain + 10 + SLACK_SECONDS


def serve_command(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SERVE, "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_serve_with_the_database_down_retries_then_exits_1_with_one_line(
    settings_env: dict[str, str], proxy: FaultProxy, proxied_url: str
) -> None:
    proxy.cut()
    process = serve_command(
        {**settings_env, "DATABASE_URL": proxied_url, "DATABASE_STARTUP_TIMEOUT_SECONDS": "3"},
        free_port(),
    )
    try:
        output, _ = process.communicate(timeout=3 + 30)
    finally:
        process.kill()
    text = output.decode(errors="replace")
    lines = text.strip().splitlines()

    assert process.returncode == 1, text
    assert "Traceback" not in text
    attempts = [line for line in lines if "database unreachable (attempt" in line]
    assert len(attempts) >= 2, text
    assert lines[-1].startswith("error: the database is unreachable after 3 s"), text
    # Nothing but the attempts and the final line.
    assert len(lines) == len(attempts) + 1, text


def test_serve_serves_once_the_database_is_back_within_the_timeout(
    settings_env: dict[str, str], db: Session, proxy: FaultProxy, proxied_url: str
) -> None:
    make_user(db)
    proxy.cut()
    env = {**settings_env, "DATABASE_URL": proxied_url, "DATABASE_STARTUP_TIMEOUT_SECONDS": "30"}
    server = LiveServer(env, command=SERVE)

    def restore_after_the_first_attempt() -> None:
        wait_until(lambda: "database unreachable (attempt 1)" in server.read_log(), 30)
        time.sleep(1)
        proxy.restore()

    restorer = threading.Thread(target=restore_after_the_first_attempt)
    restorer.start()
    try:
        server.start()
        with httpx2.Client(base_url=server.url, timeout=30) as client:
            login(client)
    finally:
        restorer.join()
        server.close()


async def _timed_login(
    client: httpx2.AsyncClient, body: dict[str, str]
) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    response = await client.post("/account/login", json=body)
    return response, time.monotonic() - started


def test_a_login_flood_past_the_argon2_queue_is_shed_at_once(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    make_user(db)
    # Production's argon2 cost: each verification takes tens of milliseconds.
    server = live_server(
        PASSWORD_HASH_MEMORY_KIB="19456",
        PASSWORD_HASH_TIME_COST="2",
        PASSWORD_HASH_QUEUE_LIMIT="32",
        LOGIN_MAX_FAILURES="1000",
    )
    flood_size = 200

    async def run() -> tuple[list[tuple[httpx2.Response, float]], tuple[httpx2.Response, float]]:
        limits = httpx2.Limits(max_connections=flood_size + 10)
        async with httpx2.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            flood = [
                asyncio.ensure_future(
                    _timed_login(client, {"email": f"guess{n}@example.com", "password": "x"})
                )
                for n in range(flood_size)
            ]
            await asyncio.sleep(0.5)
            real = await _timed_login(client, RIGHT)
            return list(await asyncio.gather(*flood)), real

    flood, (real, real_seconds) = asyncio.run(run())

    shed = [(response, seconds) for response, seconds in flood if response.status_code == 503]
    assert {response.status_code for response, _ in flood} <= {400, 503}
    assert shed, "no request found the queue full"
    for response, _ in shed:
        assert int(response.headers["Retry-After"]) >= 1
    # Refused at once, not after waiting behind the flood.
    slowest_verdict = max(seconds for response, seconds in flood if response.status_code == 400)
    assert min(seconds for _, seconds in shed) < slowest_verdict
    assert real.status_code in (200, 503), real.text
    if real.status_code == 503:
        assert int(real.headers["Retry-After"]) >= 1
    assert real_seconds < SLACK_SECONDS


def test_sigterm_drains_readiness_first_then_exits(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    make_user(db)
    drain = 3
    server = live_server(command=SERVE, SHUTDOWN_DRAIN_SECONDS=str(drain))
    assert server.process is not None
    with httpx2.Client(base_url=server.url, timeout=SLACK_SECONDS) as client:
        assert client.get("/health/ready").status_code == 200
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        wait_until(lambda: client.get("/health/ready").status_code == 503, 1.5)
        # Still served meanwhile, logins included.
        while time.monotonic() - started < drain - 1:
            login(client)
            time.sleep(0.2)
        assert server.process.poll() is None

    server.process.wait(timeout=drain + 10 + SLACK_SECONDS)
    assert time.monotonic() - started >= drain
