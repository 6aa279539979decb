"""A database that does not answer in time: 503 with Retry-After, never a 500, and no
failed login counted (SQLite and PostgreSQL alike: the tables are locked by another client)."""

import contextlib
import sqlite3
from collections.abc import Iterator

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from tests.factories import DEFAULT_PASSWORD, make_user

RIGHT = {"email": "ada@example.com", "password": DEFAULT_PASSWORD}
WRONG = {"email": "ada@example.com", "password": "not the password at all"}
MAX_FAILURES = 2


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {
        **settings_env,
        "DATABASE_TIMEOUT_SECONDS": "1",
        "LOGIN_MAX_FAILURES": str(MAX_FAILURES),
    }


@contextlib.contextmanager
def locked_database(database_url: str, sync_engine: Engine) -> Iterator[None]:
    """Another client holds a lock that every request of the service waits for."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(url.database or "", isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.rollback()
            connection.close()
        return
    with sync_engine.connect() as locker:
        locker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            locker.rollback()


def assert_unavailable(response: httpx2.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/service-unavailable"


def test_a_database_slower_than_the_timeout_answers_503_and_counts_no_failure(
    client: TestClient, db: Session, database_url: str, sync_engine: Engine
) -> None:
    make_user(db)
    db.close()
    token_form = {"grant_type": "password", "username": WRONG["email"], "password": "wrong!"}
    with locked_database(database_url, sync_engine):
        for _ in range(MAX_FAILURES + 1):
            assert_unavailable(client.post("/account/login", json=WRONG))
        assert_unavailable(client.post("/account/token", data=token_form))
        assert_unavailable(client.post("/account/register", json=RIGHT | {"email": "b@x.org"}))

    # Over LOGIN_MAX_FAILURES answers were 503: none was a verdict, so none counted.
    response = client.post("/account/login", json=RIGHT)
    assert response.status_code == 200, response.text
