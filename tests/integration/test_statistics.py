"""Planner statistics refreshed as a table grows (PostgreSQL): only the tables that need it."""

from __future__ import annotations

import psycopg
import pytest

from app.store.db import Database
from app.store.migrate import upgrade
from tests.support.processes import fresh_postgres_database

pytestmark = pytest.mark.integration


def analyzed(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname, analyze_count FROM pg_stat_user_tables"
            " WHERE relname IN ('customers', 'outbox')"
        )
        return {str(name): int(count) for name, count in rows.fetchall()}


def test_only_a_table_that_doubled_since_its_last_analyze_is_analyzed() -> None:
    with fresh_postgres_database() as url:
        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
        db = Database(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            db.refresh_statistics("customers", "outbox", only_if_stale=True)
            assert analyzed(url) == {"customers": 0, "outbox": 0}  # empty: nothing to do

            with psycopg.connect(url) as conn:
                conn.execute(
                    "INSERT INTO customers (org_id, id, profile, profile_version, stats_activity,"
                    " stats_counter, stats_digest, first_seen_at, changed_at)"
                    " SELECT 'o', 'c' || i, '{}', 1, 0, 0, '', now(), now()"
                    " FROM generate_series(1, 1500) i"
                )
                conn.commit()
                conn.execute("SELECT pg_stat_force_next_flush()")  # counters visible now
            db.refresh_statistics("customers", "outbox", only_if_stale=True)
            assert analyzed(url) == {"customers": 1, "outbox": 0}

            db.refresh_statistics("customers", "outbox", only_if_stale=True)
            assert analyzed(url)["customers"] == 1  # fresh now: not again
        finally:
            db.dispose()
