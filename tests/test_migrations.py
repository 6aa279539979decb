"""Alembic: the migrations build the models' schema, and go down and up again."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from alembic import command
from app.db import Base, sync_url
from tests.conftest import ROOT, _create_postgres_database


@pytest.fixture
def empty_database_url(migrated_database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of its own, on the same kind of server as the run's."""
    if make_url(migrated_database_url).get_backend_name() == "postgresql":
        url, drop = _create_postgres_database(migrated_database_url)
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path / 'migrations.db'}"


def _config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logging"] = False
    return config


def test_migrations_go_up_down_and_up_again(empty_database_url: str) -> None:
    config = _config(empty_database_url)
    engine = create_engine(sync_url(empty_database_url))
    try:
        command.upgrade(config, "head")
        assert {"users", "refresh_tokens"} <= set(inspect(engine).get_table_names())
        command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(config, "head")
        assert {"users", "refresh_tokens"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_models_and_the_migrations_do_not_drift(empty_database_url: str) -> None:
    command.upgrade(_config(empty_database_url), "head")
    engine = create_engine(sync_url(empty_database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_0004_keeps_the_rows_and_never_reuses_a_deleted_users_id(empty_database_url: str) -> None:
    config = _config(empty_database_url)
    engine = create_engine(sync_url(empty_database_url))
    insert = text("INSERT INTO users (email, password_hash, created_at) VALUES (:email, 'x', :now)")
    now = datetime.now(UTC)
    try:
        command.upgrade(config, "0002")
        with engine.begin() as connection:
            connection.execute(insert, {"email": "old@example.com", "now": now})
        command.upgrade(config, "0004")
        with engine.begin() as connection:
            kept = connection.execute(
                text("SELECT id, email, credentials_version, last_login_at FROM users")
            ).all()
            connection.execute(insert, {"email": "highest@example.com", "now": now})
            highest = connection.scalar(text("SELECT max(id) FROM users"))
            connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": highest})
            connection.execute(insert, {"email": "newcomer@example.com", "now": now})
            newcomer = connection.scalar(
                text("SELECT id FROM users WHERE email = 'newcomer@example.com'")
            )
        command.downgrade(config, "0002")
        with engine.connect() as connection:
            after_downgrade = connection.scalar(text("SELECT count(*) FROM users"))
    finally:
        engine.dispose()

    assert kept == [(1, "old@example.com", 0, None)]
    assert newcomer > highest
    assert after_downgrade == 2
