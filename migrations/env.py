"""Alembic environment: the URL comes from the service's settings, never from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from app.core.config import load_settings
from app.lists.staging import is_staging_table
from app.store.db import make_engine
from app.store.models import Base
from app.store.models.mirror import EXPRESSION_INDEXES

config = context.config
target_metadata = Base.metadata


def _described_by_models(name: str | None, type_: str, _parent: object) -> bool:
    # A running list resync's staging table is made by the code, not by a migration.
    if type_ == "table" and is_staging_table(name):
        return False
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
        include_name=_described_by_models,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # handed in by app.migrate (tests, `loke-sync db upgrade`)
        run_migrations(connection)
        return
    engine = make_engine(load_settings().sqlalchemy_url)
    with engine.connect() as connection:
        run_migrations(connection)
    engine.dispose()


main()
