"""Bringing a database to the newest schema (the `release` process, `loke-sync db upgrade`)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from app.store.db import make_engine

ROOT = Path(__file__).resolve().parents[2]  # the checkout: alembic.ini, migrations/

# The PostgreSQL advisory lock every upgrade holds: two release jobs at once (two deploys, or
# a deploy's and compose's) would both create the same tables, and one would fail half-way. The
# value is arbitrary but fixed forever: "loke" in ASCII. Any process may take it to keep
# migrations out (the tests do).
MIGRATION_LOCK_KEY = 0x6C6F6B65


def alembic_config() -> Config:
    """Alembic's configuration, with the migrations beside the code."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return config


def upgrade(database_url: str) -> None:
    """Idempotent: a database already at head is left as it is. Safe to run twice at once: the
    second waits for the first, then finds nothing to do."""
    with _sqlite_migration_lock(database_url):
        engine = make_engine(database_url)
        try:
            with (
                engine.connect() as connection,
                _postgres_migration_lock(connection),
                connection.begin(),
            ):
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            engine.dispose()


def sqlite_lock_path(database_url: str) -> Path | None:
    """The file an upgrade of this SQLite database locks (None: not a SQLite file)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(f"{url.database}.migrate-lock")


@contextmanager
def _sqlite_migration_lock(database_url: str) -> Iterator[None]:
    """Holds an exclusive lock on a file beside a SQLite database, waiting as long as another
    upgrade holds it.

    SQLite's own locking is not enough for two upgrades of a new file at once: the second one's
    `PRAGMA journal_mode=WAL` (app.store.db, on connecting) answers "database is locked" at once,
    without waiting, while the first one is writing.
    """
    path = sqlite_lock_path(database_url)
    if path is None:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, or the process ends
        yield


@contextmanager
def _postgres_migration_lock(connection: Connection) -> Iterator[None]:
    """Holds MIGRATION_LOCK_KEY on PostgreSQL, waiting as long as another upgrade holds it.

    Session-level, not transaction-level: it is taken before alembic's transaction begins, so
    the waiting upgrade reads the version table only after the first one committed.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()  # ends the statement's transaction; a session-level lock outlives it
    try:
        yield
    finally:
        # A connection too broken to unlock is closed with the engine (upgrade's dispose), which
        # releases the lock as well; the error that broke it is the one worth raising.
        with suppress(SQLAlchemyError):
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
