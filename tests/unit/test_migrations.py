"""The alembic migrations build exactly the schema the models describe (SQLite here; the
integration suite runs the same check on PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.db import make_engine
from app.migrate import upgrade
from app.models import Base


def schema_differences(url: str) -> list[object]:
    upgrade(url)
    upgrade(url)  # a second run is a no-op (the release process may run on every deploy)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    assert schema_differences(f"sqlite:///{tmp_path / 'schema.sqlite'}") == []
