"""API.md: /health/ready answers 503 with "not migrated" until the schema is migrated."""

from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app


def test_readiness_reports_an_unmigrated_database(settings: Settings, tmp_path: Path) -> None:
    empty = settings.model_copy(update={"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    with TestClient(create_app(empty)) as client:
        response = client.get("/health/ready")

    assert response.status_code == 503
    assert "not migrated" in response.text
