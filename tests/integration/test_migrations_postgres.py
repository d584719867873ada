"""The alembic migrations build exactly the schema the models describe, on PostgreSQL."""

from __future__ import annotations

from tests.support.processes import fresh_postgres_database
from tests.unit.test_migrations import schema_differences


def test_migrations_match_the_models_on_postgresql() -> None:
    with fresh_postgres_database() as url:
        assert schema_differences(url) == []
