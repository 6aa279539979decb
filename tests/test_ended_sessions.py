"""Ended-session records: written by every way a session ends, outliving the user, read
when the revoked-session set is rebuilt, pruned after one access-token lifetime plus the
leeway; with memory:// a running service reads those a command wrote within 2 s."""

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from app import cli
from app.config import Settings
from app.main import create_app
from app.models import EndedSession, User
from tests.conftest import LiveServer
from tests.factories import bearer, login, make_user
from tests.test_cli import run


def test_a_deleted_users_sessions_stay_ended_when_the_set_is_rebuilt(
    settings: Settings, db: Session
) -> None:
    user = make_user(db)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        pair = login(client)
        assert (
            client.post("/account/logout-all", headers=bearer(pair["access_token"])).status_code
            == 204
        )
    # The user and its refresh-token rows go, as deleting an account does.
    db.execute(delete(User).where(User.id == user.id))
    db.commit()

    # A new process rebuilds its set from the records alone.
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        response = client.get("/test", headers=bearer(pair["access_token"]))

    assert response.status_code == 401
    assert 'error_description="session ended"' in response.headers["WWW-Authenticate"]


def test_a_rebuilt_set_keeps_an_ended_session_through_the_leeway(
    settings_env: dict[str, str], db: Session
) -> None:
    make_user(db)
    env = {**settings_env, "TOKEN_ACCESS_TTL_SECONDS": "1", "TOKEN_LEEWAY_SECONDS": "30"}
    settings = Settings(**env)  # type: ignore[arg-type]
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        ended, live = login(client), login(client)
        client.post("/account/logout", json={"refresh_token": ended["refresh_token"]})
    time.sleep(2.1)  # past exp, within the leeway

    with TestClient(create_app(settings), base_url="http://testserver") as client:
        ended_status = client.get("/test", headers=bearer(ended["access_token"])).status_code
        live_status = client.get("/test", headers=bearer(live["access_token"])).status_code

    assert (ended_status, live_status) == (401, 200)


def test_prune_deletes_records_older_than_the_access_lifetime_plus_the_leeway(
    monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str], db: Session
) -> None:
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TOKEN_ACCESS_TTL_SECONDS", "600")
    monkeypatch.setenv("TOKEN_LEEWAY_SECONDS", "60")
    now = datetime.now(UTC)
    kept, gone = uuid.uuid4(), uuid.uuid4()
    db.add_all(
        [
            EndedSession(session_id=kept, ended_at=now - timedelta(seconds=640)),
            EndedSession(session_id=gone, ended_at=now - timedelta(seconds=680)),
        ]
    )
    db.commit()

    assert cli.main(["prune"]) == 0

    db.expire_all()
    assert set(db.scalars(select(EndedSession.session_id))) == {kept}


def test_create_user_on_an_existing_user_ends_its_sessions_in_a_running_service_within_2_s(
    live_server: Callable[..., LiveServer], settings_env: dict[str, str], db: Session
) -> None:
    make_user(db)
    server = live_server(RATE_LIMIT_STORAGE_URL="memory://")
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        pair = login(client)
        assert client.get("/test", headers=bearer(pair["access_token"])).status_code == 200

        result = run(
            ["create-user", "--email", "ada@example.com"],
            {**settings_env, "RATE_LIMIT_STORAGE_URL": "memory://"},
            stdin="a brand new operator passphrase\n",
        )
        assert result.returncode == 0, result.stderr
        ended_at = time.monotonic()
        while client.get("/test", headers=bearer(pair["access_token"])).status_code == 200:
            assert time.monotonic() - ended_at < 2.0
            time.sleep(0.05)

        assert client.get("/test", headers=bearer(pair["access_token"])).status_code == 401


def test_readiness_says_not_migrated_on_an_empty_database(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    empty = f"sqlite:///{tmp_path}/empty.db"
    settings = Settings(**{**settings_env, "DATABASE_URL": empty})  # type: ignore[arg-type]
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        response = client.get("/health/ready")

    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["checks"] == {"database": "not migrated", "revocation_store": "ok"}


def test_readiness_says_not_migrated_behind_the_head_revision(
    client: TestClient, db: Session
) -> None:
    (version,) = db.execute(text("SELECT version_num FROM alembic_version")).one()
    db.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    db.commit()
    try:
        response = client.get("/health/ready")
    finally:
        db.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": version})
        db.commit()

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "not migrated"


def test_readiness_answers_503_draining_once_a_shutdown_begins(client: TestClient) -> None:
    client.app.state.runtime.draining = True  # type: ignore[attr-defined]

    response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["draining"] is True
    assert body["checks"] == {"database": "ok", "revocation_store": "ok"}


def test_the_openapi_document_describes_the_readiness_503(client: TestClient) -> None:
    responses = client.get("/openapi.json").json()["paths"]["/health/ready"]["get"]["responses"]

    schema = responses["503"]["content"]["application/problem+json"]["schema"]
    assert schema["$ref"].endswith("/NotReadyProblem")
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Readiness")
