"""Alembic environment: migrates the database named by DATABASE_URL with a synchronous driver."""

from logging.config import fileConfig

from sqlalchemy import Connection, create_engine

from alembic import context
from app import models  # noqa: F401  (registers the tables on Base.metadata)
from app.config import Settings
from app.db import Base, postgres_connect_args, sync_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# `alembic upgrade head` in a checkout reads the environment; the service passes its URL.
database_url = config.attributes.get("database_url") or Settings().DATABASE_URL
url = sync_url(database_url)
timeout_seconds = config.attributes.get("database_timeout") or Settings().DATABASE_TIMEOUT_SECONDS

# Instances starting together migrate once: each takes this PostgreSQL advisory lock
# (session-level, so it outlives the migration's own transaction) and waits for the others.
MIGRATION_LOCK_KEY = 0x6A77742D61757468  # "jwt-auth" in ASCII


def _lock(connection: Connection, function: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT {function}({MIGRATION_LOCK_KEY})")
        connection.commit()


def run_migrations_offline() -> None:
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # Connecting is bounded by DATABASE_TIMEOUT_SECONDS; statements are not: a table
    # rebuild may take longer.
    connect_args = (
        postgres_connect_args(timeout_seconds, statements=False)
        if url.get_backend_name() == "postgresql"
        else {}
    )
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            _lock(connection, "pg_advisory_lock")
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            try:
                with context.begin_transaction():
                    context.run_migrations()
            finally:
                _lock(connection, "pg_advisory_unlock")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
