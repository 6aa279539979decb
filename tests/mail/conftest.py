from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.mail.relay import HangingRelay


@pytest.fixture
def hanging_relay() -> Iterator[HangingRelay]:
    server = HangingRelay(free_port())
    yield server
    server.close()
