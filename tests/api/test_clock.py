"""One clock: freezing `runtime.clock` moves every module that reads the time, so tests
step over lifetimes and windows instead of sleeping through them."""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user


def test_moving_the_clock_past_its_expiry_refuses_a_cached_access_token(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    token = login(client)["access_token"]
    # Verified once: the next checks are answered from the verified-token cache.
    assert client.get("/test", headers=bearer(token)).status_code == 200
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    later = runtime.clock() + timedelta(seconds=runtime.settings.TOKEN_ACCESS_TTL_SECONDS)
    runtime.clock = lambda: later

    response = client.get("/test", headers=bearer(token))

    assert response.status_code == 401
    assert "expired" in response.headers["www-authenticate"]


@pytest.fixture
def memory_client(settings_env: dict[str, str]) -> TestClient:
    # The in-process failure log reads the service's clock (Redis keeps its own TIME).
    settings = Settings(**{**settings_env, "RATE_LIMIT_STORAGE_URL": "memory://"})  # type: ignore[arg-type]
    return TestClient(create_app(settings), base_url="http://testserver")


def test_failed_logins_leave_the_window_when_the_clock_moves_on(
    memory_client: TestClient, db: Session
) -> None:
    make_user(db)
    with memory_client as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        wrong = {"email": "ada@example.com", "password": "not the password at all"}
        for _ in range(runtime.settings.LOGIN_MAX_FAILURES):
            assert client.post("/account/login", json=wrong).status_code == 400
        right = {"email": "ada@example.com", "password": DEFAULT_PASSWORD}
        assert client.post("/account/login", json=right).status_code == 429

        later = runtime.clock() + timedelta(seconds=runtime.settings.LOGIN_WINDOW_SECONDS + 1)
        runtime.clock = lambda: later

        assert client.post("/account/login", json=right).status_code == 200
