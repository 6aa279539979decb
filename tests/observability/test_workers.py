"""`jwt-auth-api serve --workers 2`: /metrics, answered by either worker, counts both."""

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.conftest import SERVE, LiveServer
from tests.observability.scrape import key, samples

pytestmark = pytest.mark.multi_instance

ROUTE = "/.well-known/jwks.json"
PER_ROUND = 40
# Each worker publishes its request durations within a second (app.observability.metrics).
SETTLE_SECONDS = 10


def settled(read: Callable[[], float], expected: float) -> float:
    """`read()` once it equals `expected`, or its last value after SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


def served_by_each_worker(folder: Path) -> list[float]:
    """How many requests to ROUTE each worker's own files hold."""
    counts = []
    for path in sorted(folder.glob("histogram_*.db")):
        total = 0.0
        found = MultiProcessCollector._read_metrics([str(path)])  # type: ignore[no-untyped-call]
        for metric in found.values():
            for sample in metric.samples:
                if sample.name.endswith("_bucket") and dict(sample.labels).get("route") == ROUTE:
                    total += sample.value
        counts.append(total)
    return counts


def test_metrics_add_up_the_requests_of_every_worker(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    # A file left by an earlier run: serve empties the folder before the workers start.
    (folder / "counter_1.db").write_bytes(b"left over")
    server = live_server("--workers", "2", command=SERVE, PROMETHEUS_MULTIPROC_DIR=str(folder))
    assert not (folder / "counter_1.db").exists()

    def fetch(_: int) -> int:
        # A connection per request, so that both workers accept some.
        return httpx2.get(f"{server.url}{ROUTE}").status_code

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            assert set(pool.map(fetch, range(PER_ROUND))) == {200}
            sent += PER_ROUND
            counts = served_by_each_worker(folder)
            if len([count for count in counts if count > 0]) >= 2:
                break
    assert settled(lambda: sum(served_by_each_worker(folder)), sent) == sent
    counts = served_by_each_worker(folder)
    assert len([count for count in counts if count > 0]) == 2, counts

    wanted = key("http_request_duration_seconds_count", method="GET", route=ROUTE, status="200")
    for _ in range(6):
        # Whichever worker answers, it reports both workers' requests.
        assert samples(httpx2.get(f"{server.url}/metrics").text)[wanted] == sent
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None


def test_serve_sets_up_the_shared_folder_itself(live_server: Callable[..., LiveServer]) -> None:
    server = live_server("--workers", "2", command=SERVE)

    def fetch(_: int) -> int:
        return httpx2.get(f"{server.url}{ROUTE}").status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(fetch, range(2 * PER_ROUND))) == {200}
    wanted = key("http_request_duration_seconds_count", method="GET", route=ROUTE, status="200")

    def scraped() -> float:
        return samples(httpx2.get(f"{server.url}/metrics").text)[wanted]

    assert settled(scraped, 2 * PER_ROUND) == 2 * PER_ROUND
    for _ in range(6):
        assert scraped() == 2 * PER_ROUND
