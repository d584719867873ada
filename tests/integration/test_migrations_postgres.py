"""The alembic migrations build exactly the schema the models describe, on PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Connection

from tests.support.processes import fresh_postgres_database
from tests.unit.test_migrations import migrating, schema_differences


def test_migrations_match_the_models_on_postgresql() -> None:
    with fresh_postgres_database() as url:
        assert schema_differences(url) == []


def body_storage(connection: Connection) -> tuple[str, str]:
    """(attstorage, attcompression) of list_run_pages.body."""
    found = connection.exec_driver_sql(
        "SELECT attstorage, attcompression FROM pg_attribute"
        " WHERE attrelid = 'list_run_pages'::regclass AND attname = 'body'"
    ).one()
    return str(found[0]), str(found[1])


def test_0008_compresses_page_bodies_with_lz4_and_its_downgrade_stores_them_plain() -> None:
    with fresh_postgres_database() as url:
        sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        with migrating(sqlalchemy_url) as (connection, config):
            command.upgrade(config, "0008")
            compressed = body_storage(connection)
            command.downgrade(config, "0007")
            plain = body_storage(connection)
    assert compressed == ("x", "l")  # extended: compressed, lz4 (this server has it)
    assert plain == ("e", "")  # external: stored as is
