"""The INSERT ... ON CONFLICT builder for the database at hand (PostgreSQL or SQLite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def name(bind: Session | Connection) -> str:
    """ "postgresql" or "sqlite"."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return str(dialect.name)


def insert(bind: Session | Connection, table: Any) -> Any:
    """Both dialects spell upserts the same way (`on_conflict_do_*`, `excluded`)."""
    return insert_for(name(bind), table)


def insert_for(dialect: str, table: Any) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
