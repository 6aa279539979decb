"""Fixtures of the fault tests: dependencies the tests can cut, freeze, stop, restart and flush."""

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.faults.proxy import FaultProxy
from tests.faults.redis_server import redis_server

__all__ = ["database_proxy", "redis_server"]


@pytest.fixture
def database_proxy(database_url: str) -> Iterator[tuple[FaultProxy, str]]:
    """A proxy in front of the test's PostgreSQL, and DATABASE_URL through it."""
    url = make_url(database_url)
    proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)
    yield proxy, proxied
    proxy.close()
