"""The alembic migrations build exactly the schema the models describe, on PostgreSQL."""

from __future__ import annotations

from alembic import command

from app.db import make_engine
from app.migrate import alembic_config, upgrade
from tests.support.processes import fresh_postgres_database
from tests.unit.test_migrations import schema_differences


def test_migrations_match_the_models_on_postgresql() -> None:
    with fresh_postgres_database() as url:
        assert schema_differences(url) == []


def body_storage(url: str) -> tuple[str, str]:
    """(attstorage, attcompression) of list_run_pages.body."""
    engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            found = connection.exec_driver_sql(
                "SELECT attstorage, attcompression FROM pg_attribute"
                " WHERE attrelid = 'list_run_pages'::regclass AND attname = 'body'"
            ).one()
    finally:
        engine.dispose()
    return str(found[0]), str(found[1])


def test_0008_compresses_page_bodies_with_lz4_and_its_downgrade_stores_them_plain() -> None:
    with fresh_postgres_database() as url:
        sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        upgrade(sqlalchemy_url)
        assert body_storage(url) == ("x", "l")  # extended: compressed, lz4 (this server has it)
        engine = make_engine(sqlalchemy_url)
        try:
            with engine.begin() as connection:
                config = alembic_config()
                config.attributes["connection"] = connection
                command.downgrade(config, "0007")
        finally:
            engine.dispose()
        assert body_storage(url) == ("e", "")  # external: stored as is
