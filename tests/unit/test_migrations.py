"""The alembic migrations build exactly the schema the models describe (SQLite here; the
integration suite runs the same check on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from app.lists import staging
from app.store.db import make_engine
from app.store.migrate import alembic_config, upgrade
from app.store.models import Base


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


@contextmanager
def migrating(url: str) -> Iterator[tuple[Connection, Config]]:
    """One connection in one transaction, and an alembic config that migrates on it: a test
    moves between revisions and looks at the data in between."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            yield connection, config
    finally:
        engine.dispose()


def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    assert schema_differences(f"sqlite:///{tmp_path / 'schema.sqlite'}") == []


def insert_running_list_run(connection: Connection) -> None:
    """List sync run 1, running, one page of two members staged (the columns since 0003)."""
    connection.exec_driver_sql(
        "INSERT INTO list_sync_runs (org_id, list_id, status, next_url, pages, members,"
        " adds, removes, attempts, started_at, updated_at) VALUES ('o', 'L1', 'running',"
        " '/members', 1, 2, 0, 0, 0, '2026-11-29 09:00', '2026-11-29 09:00')"
    )


def stage_two_members(connection: Connection) -> None:
    """Run 1's two members in the shared staging table (0006 to 0008)."""
    connection.exec_driver_sql(
        "INSERT INTO list_staging (run_id, customer_id) VALUES (1, 'C1'), (1, 'C2')"
    )


def run_status(connection: Connection) -> tuple[str, str]:
    """The one list sync run's status and error."""
    status, error = connection.exec_driver_sql(
        "SELECT status, last_error FROM list_sync_runs"
    ).one()
    return status, error


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def test_0006_stops_a_list_resync_running_across_it_and_drops_its_old_staging(
    tmp_path: Path,
) -> None:
    with migrating(f"sqlite:///{tmp_path / 'upgrade.sqlite'}") as (connection, config):
        command.upgrade(config, "0005")
        insert_running_list_run(connection)
        stage_two_members(connection)
        command.upgrade(config, "0006")
        status, error = run_status(connection)
        staged = connection.exec_driver_sql("SELECT count(*) FROM list_staging").scalar()
    assert status == "failed"
    assert "interrupted by an upgrade" in error
    assert staged == 0


def test_0007_stops_a_list_resync_running_across_it_and_its_pages_hold_bodies_after(
    tmp_path: Path,
) -> None:
    with migrating(f"sqlite:///{tmp_path / 'upgrade.sqlite'}") as (connection, config):
        command.upgrade(config, "0006")
        insert_running_list_run(connection)
        connection.exec_driver_sql(
            "INSERT INTO list_run_pages (run_id, seq, url, members, last)"
            " VALUES (1, 0, '/members', 2, false), (1, 1, '/members?after=2', NULL, false)"
        )
        stage_two_members(connection)
        command.upgrade(config, "0007")
        status, error = run_status(connection)
        left = connection.exec_driver_sql(
            "SELECT (SELECT count(*) FROM list_run_pages), (SELECT count(*) FROM list_staging)"
        ).one()
        connection.exec_driver_sql(
            "INSERT INTO list_run_pages (run_id, seq, url, next_url, body)"
            " VALUES (2, 0, '/members', NULL, x'5b5d')"
        )
        command.downgrade(config, "0006")
        after_downgrade = connection.exec_driver_sql("SELECT count(*) FROM list_run_pages").scalar()
    assert status == "failed"
    assert "revision 0007" in error
    assert tuple(left) == (0, 0)
    assert after_downgrade == 0  # run 2 is not running: its page goes


def test_0009_stops_a_list_resync_running_across_it_and_stages_per_run_after(
    tmp_path: Path,
) -> None:
    with migrating(f"sqlite:///{tmp_path / 'upgrade.sqlite'}") as (connection, config):
        command.upgrade(config, "0008")
        insert_running_list_run(connection)
        connection.exec_driver_sql(
            "INSERT INTO list_run_pages (run_id, seq, url, next_url, members)"
            " VALUES (1, 0, '/members', '/members?after=2', 2)"
        )
        stage_two_members(connection)
        command.upgrade(config, "0009")
        status, error = run_status(connection)
        pages = connection.exec_driver_sql("SELECT count(*) FROM list_run_pages").scalar()
        upgraded = table_names(connection)
        # A run started after the upgrade has a staging table of its own; a downgrade stops it.
        connection.exec_driver_sql("UPDATE list_sync_runs SET status = 'running'")
        staging.staging_table(1).create(connection)
        command.downgrade(config, "0008")
        after_downgrade = run_status(connection)
        downgraded = table_names(connection)
    assert status == "failed"
    assert "revision 0009" in error
    assert pages == 0
    assert "list_staging" not in upgraded
    assert after_downgrade[0] == "failed"
    assert "0009 downgrade" in after_downgrade[1]
    assert "list_staging" in downgraded
    assert "list_staging_1" not in downgraded
