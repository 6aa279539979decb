"""Fixtures of the fault tests: dependencies the tests can stop, restart and flush."""

from tests.faults.redis_server import redis_server

__all__ = ["redis_server"]
