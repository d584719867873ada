"""Engine and session factory; the one place that knows PostgreSQL from SQLite."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        """An aware datetime, in UTC (naive for SQLite); a naive one is refused."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        """The stored time as an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for its dialect."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )
        _make_sqlite_transactional(engine)
        return engine
    # No pre-ping: it costs a round trip per checkout, which is per webhook. A connection lost
    # under us fails that one request or task (503, or a task retry) and SQLAlchemy drops the
    # pool; recycling keeps connections younger than server-side idle limits.
    return create_engine(url, pool_size=5, max_overflow=5, pool_recycle=1800, **kwargs)


def _make_sqlite_transactional(engine: Engine) -> None:
    # pysqlite's own transaction handling starts transactions late and as readers, so two
    # processes that read then write can deadlock ("database is locked"). Take the write lock
    # up front instead: SQLite serializes writers anyway, and WAL keeps readers unblocked.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """Owns the engine and hands out one session per unit of work."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._local = threading.local()
        # Every thread's own connection, so that dispose() closes them all, not only its own.
        self._kept: list[tuple[int, psycopg.Connection[Any]]] = []
        self._kept_lock = threading.Lock()
        self._libpq_url = self.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )

    @property
    def dialect(self) -> str:
        """`postgresql` or `sqlite`."""
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def execute_one(self, sql: dict[str, str], params: dict[str, Any]) -> Any:
        """Run one self-committing statement (SQL per dialect, in the driver's own parameter
        style) and return the first column of its first row. For the webhook hot path: on
        PostgreSQL it goes straight to a connection this thread keeps, skipping the pool and
        SQLAlchemy, which cost more than the insert. Raises DatabaseUnavailable."""
        row = self.fetch_one(sql, params)
        return row[0] if row else None

    def fetch_one(self, sql: dict[str, str], params: dict[str, Any]) -> tuple[Any, ...] | None:
        """As `execute_one`, but the whole first row. On PostgreSQL the row comes in binary
        format: a large bytea read as text is hex, twice its size to encode and decode."""
        if self.dialect != "postgresql":
            try:
                with self.engine.begin() as conn:
                    first = conn.exec_driver_sql(sql[self.dialect], params).first()
            except SQLAlchemyError as exc:
                raise DatabaseUnavailable(type(exc).__name__) from exc
            return None if first is None else tuple(first)
        own = getattr(self._local, "connection", None)
        if own is not None and own[0] != os.getpid():  # inherited across a fork: not ours
            own = None
        try:
            if own is None or own[1].closed:
                self._forget(own)
                own = (os.getpid(), psycopg.connect(self._libpq_url, autocommit=True))
                self._local.connection = own
                with self._kept_lock:
                    self._kept.append(own)
            row: tuple[Any, ...] | None = (
                own[1].execute(sql["postgresql"], params, binary=True).fetchone()
            )
        except psycopg.Error as exc:
            self._local.connection = None
            if own is not None:
                self._forget(own)
                with suppress(psycopg.Error):
                    own[1].close()
            raise DatabaseUnavailable(type(exc).__name__) from exc
        return row

    def refresh_statistics(self, *tables: str, only_if_stale: bool = False) -> None:
        """ANALYZE these tables now (PostgreSQL; SQLite plans without statistics), or with
        `only_if_stale` those that have changed by more than their size at the last ANALYZE
        (plus 1000 rows): a table growing from empty is analyzed as it doubles.

        For tables that grow by thousands of rows a second during a backfill or a list sync,
        faster than autovacuum looks: with statistics from when they were empty, the planner
        scans a whole organization's rows for every page or batch where an index would find a
        thousand, and pages get slower as the organization grows."""
        if self.dialect != "postgresql":
            return
        with self.engine.connect() as conn:
            if only_if_stale:
                stale = conn.exec_driver_sql(
                    "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%(tables)s) AND"
                    " n_mod_since_analyze > 1000 + GREATEST(n_live_tup - n_mod_since_analyze, 0)",
                    {"tables": list(tables)},
                )
                tables = tuple(str(name) for name in stale.scalars())
            if tables:
                # Names from our own code, never from input.
                conn.exec_driver_sql(f"ANALYZE {', '.join(tables)}")
            conn.commit()

    def _forget(self, own: tuple[int, psycopg.Connection[Any]] | None) -> None:
        with self._kept_lock:
            if own in self._kept:
                self._kept.remove(own)

    def dispose(self) -> None:
        """Close every connection: the engine's pool and those the threads of this process
        keep (a thread using one again afterwards opens a new one)."""
        with self._kept_lock:
            kept, self._kept = self._kept, []
        for pid, connection in kept:
            if pid == os.getpid():  # (one inherited across a fork is the parent's to close)
                connection.close()
        self._local.connection = None
        self.engine.dispose()


class DatabaseUnavailable(RuntimeError):
    """The database could not take a statement right now (down, restarting, full, locked)."""
