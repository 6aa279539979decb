"""Alembic: the migrations build the models' schema, and go down and up again."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
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
        assert {"users", "refresh_tokens", "mail_outbox"} <= set(inspect(engine).get_table_names())
        command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(config, "head")
        assert {"users", "refresh_tokens", "mail_outbox"} <= set(inspect(engine).get_table_names())
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


def test_roles_migration_keeps_existing_users_active_with_no_roles_and_goes_down(
    empty_database_url: str,
) -> None:
    config = _config(empty_database_url)
    engine = create_engine(sync_url(empty_database_url))
    try:
        command.upgrade(config, "0002")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (email, password_hash, created_at) "
                    "VALUES ('old@example.com', 'x', CURRENT_TIMESTAMP)"
                )
            )
        command.upgrade(config, "0007")
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT is_active, last_login_at FROM users WHERE email = 'old@example.com'")
            ).one()
            roles = connection.execute(text("SELECT count(*) FROM user_roles")).scalar_one()
        assert bool(row.is_active) is True
        assert row.last_login_at is None
        assert roles == 0
        indexes = {index["name"] for index in inspect(engine).get_indexes("users")}
        assert "ix_users_email_pattern" in indexes
        if engine.dialect.name == "postgresql":
            # The admin search's `email LIKE 'prefix%'` is answered from the pattern index.
            with engine.begin() as connection:
                connection.execute(text("SET LOCAL enable_seqscan = off"))
                plan = "\n".join(
                    connection.execute(
                        text("EXPLAIN SELECT id FROM users WHERE email LIKE :p ESCAPE '\\'"),
                        {"p": "old%"},
                    ).scalars()
                )
            assert "ix_users_email_pattern" in plan, plan

        command.downgrade(config, "0002")
        inspector = inspect(engine)
        assert "user_roles" not in inspector.get_table_names()
        columns = {column["name"] for column in inspector.get_columns("users")}
        assert not {"is_active", "last_login_at"} & columns
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM users")).scalar_one() == 1
    finally:
        engine.dispose()


def _before(config: Config, revision: str) -> str:
    """The revision just before `revision`, wherever the chain puts it."""
    down = ScriptDirectory.from_config(config).get_revision(revision).down_revision
    assert isinstance(down, str)
    return down


def _add_users(url: str, emails: list[str]) -> None:
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as connection:
            for email in emails:
                connection.execute(
                    text(
                        "INSERT INTO users (email, password_hash, created_at) "
                        "VALUES (:email, 'x', CURRENT_TIMESTAMP)"
                    ),
                    {"email": email},
                )
    finally:
        engine.dispose()


def _emails(url: str) -> list[str]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return list(connection.scalars(text("SELECT email FROM users ORDER BY id")))
    finally:
        engine.dispose()


def test_the_email_migration_decodes_idna_domains_of_existing_users(
    empty_database_url: str,
) -> None:
    config = _config(empty_database_url)
    command.upgrade(config, _before(config, "0006"))
    _add_users(empty_database_url, ["josé@xn--exmple-cua.de", "ada@example.com"])

    command.upgrade(config, "0006")

    assert _emails(empty_database_url) == ["josé@exämple.de", "ada@example.com"]
    command.downgrade(config, _before(config, "0006"))
    assert _emails(empty_database_url) == ["josé@exämple.de", "ada@example.com"]


def test_the_email_migration_refuses_to_merge_two_users_and_names_them(
    empty_database_url: str,
) -> None:
    config = _config(empty_database_url)
    command.upgrade(config, _before(config, "0006"))
    _add_users(empty_database_url, ["josé@exämple.de", "bob@example.com", "josé@xn--exmple-cua.de"])

    with pytest.raises(RuntimeError, match="would share one canonical email") as refused:
        command.upgrade(config, "0006")

    message = str(refused.value)
    assert "users.id 1 ('josé@exämple.de')" in message
    assert "users.id 3 ('josé@xn--exmple-cua.de')" in message
    assert "bob" not in message
    # Nothing changed: the operator decides which account stays.
    assert _emails(empty_database_url) == [
        "josé@exämple.de",
        "bob@example.com",
        "josé@xn--exmple-cua.de",
    ]


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
