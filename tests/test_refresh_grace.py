"""REFRESH_REUSE_GRACE_SECONDS: a refresh retried because its answer was lost is not reuse,
while its child is unused and the window open; exactly one child stays live."""

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.models import RefreshToken
from app.security.refresh_tokens import digest
from tests.conftest import LiveServer
from tests.factories import bearer, login, make_user
from tests.test_concurrency import RACERS, TIMEOUT_SECONDS, race_refresh

GRACE = 30


@pytest.fixture
def grace_client(settings_env: dict[str, str], db: Session) -> Iterator[TestClient]:
    make_user(db)
    settings = Settings(**{**settings_env, "REFRESH_REUSE_GRACE_SECONDS": str(GRACE)})  # type: ignore[arg-type]
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client


def refresh(client: TestClient | httpx2.Client, pair: dict[str, Any]) -> Any:
    return client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})


def live_children(db: Session) -> int:
    db.expire_all()
    count = db.scalar(
        select(func.count())
        .select_from(RefreshToken)
        .where(RefreshToken.spent_at.is_(None), RefreshToken.revoked_at.is_(None))
    )
    return int(count or 0)


def test_a_retry_with_an_unused_child_gets_a_new_pair_and_the_old_child_dies(
    grace_client: TestClient, db: Session
) -> None:
    first = login(grace_client)
    lost = refresh(grace_client, first)
    assert lost.status_code == 200

    retried = refresh(grace_client, first)

    assert retried.status_code == 200
    assert live_children(db) == 1
    assert (
        grace_client.get("/test", headers=bearer(retried.json()["access_token"])).status_code == 200
    )
    assert refresh(grace_client, retried.json()).status_code == 200


def test_a_child_replaced_by_a_retry_is_reuse_when_presented_later(
    grace_client: TestClient,
) -> None:
    """A thief who retried first loses the session as soon as the real client shows up."""
    first = login(grace_client)
    clients_child = refresh(grace_client, first).json()
    thiefs = refresh(grace_client, first)
    assert thiefs.status_code == 200

    shown_up = refresh(grace_client, clients_child)

    assert shown_up.status_code == 401
    assert "reuse" in shown_up.headers["WWW-Authenticate"]
    assert refresh(grace_client, thiefs.json()).status_code == 401
    assert (
        grace_client.get("/test", headers=bearer(thiefs.json()["access_token"])).status_code == 401
    )


def test_a_retry_after_the_child_was_used_is_reuse(grace_client: TestClient) -> None:
    first = login(grace_client)
    child = refresh(grace_client, first).json()
    grandchild = refresh(grace_client, child)
    assert grandchild.status_code == 200

    assert refresh(grace_client, first).status_code == 401
    assert refresh(grace_client, grandchild.json()).status_code == 401


def test_a_retry_past_the_window_is_reuse(settings_env: dict[str, str], db: Session) -> None:
    make_user(db)
    settings = Settings(**{**settings_env, "REFRESH_REUSE_GRACE_SECONDS": "1"})  # type: ignore[arg-type]
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        first = login(client)
        child = refresh(client, first).json()
        time.sleep(2.1)

        assert refresh(client, first).status_code == 401
        assert refresh(client, child).status_code == 401


def test_without_the_window_a_retry_is_reuse(client: TestClient, db: Session) -> None:
    make_user(db)
    first = login(client)
    child = refresh(client, first).json()

    assert refresh(client, first).status_code == 401
    assert refresh(client, child).status_code == 401


def test_concurrent_refreshes_within_the_window_all_answer_200_leaving_one_live_child(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    make_user(db)
    server = live_server(REFRESH_REUSE_GRACE_SECONDS=GRACE)
    with httpx2.Client(base_url=server.url, timeout=TIMEOUT_SECONDS) as client:
        pair = login(client)

        responses = race_refresh(server.url, pair["refresh_token"], RACERS)

        assert [r.status_code for r in responses] == [200] * RACERS, [r.text for r in responses]
        assert live_children(db) == 1
        # The one live child is one of the answers, and it refreshes.
        live_digest = db.scalar(
            select(RefreshToken.token_digest).where(
                RefreshToken.spent_at.is_(None), RefreshToken.revoked_at.is_(None)
            )
        )
        [live] = [r.json() for r in responses if digest(r.json()["refresh_token"]) == live_digest]
        assert refresh(client, live).status_code == 200
