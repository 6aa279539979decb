from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.mail.relay import HangingRelay, Relay


@pytest.fixture
def relay() -> Iterator[Relay]:
    """aiosmtpd on a free port of 127.0.0.1, plain SMTP (SMTP_SECURITY=none)."""
    server = Relay(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def hanging_relay() -> Iterator[HangingRelay]:
    server = HangingRelay(free_port())
    yield server
    server.close()
