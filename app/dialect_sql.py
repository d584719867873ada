"""The INSERT ... ON CONFLICT builder for the database at hand (PostgreSQL or SQLite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert(bind: Session | Connection, table: Any) -> Any:
    """Both dialects spell upserts the same way (`on_conflict_do_*`, `excluded`)."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    if dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
