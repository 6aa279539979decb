"""Store tests run against a private redis-server as the fault tests do."""

from tests.faults.redis_server import redis_server

__all__ = ["redis_server"]
