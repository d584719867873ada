"""The alembic migrations build exactly the schema the models describe (SQLite here; the
integration suite runs the same check on PostgreSQL)."""

from __future__ import annotations

import fcntl
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from app.lists import staging
from app.store.db import make_engine
from app.store.migrate import MIGRATION_LOCK_KEY, alembic_config, sqlite_lock_path, upgrade
from app.store.models import Base
from app.store.models.mirror import EXPRESSION_INDEXES
from tests.support.processes import fresh_postgres_database


def schema_differences(url: str) -> list[object]:
    upgrade(url)
    upgrade(url)  # a second run is a no-op (the release process may run on every deploy)
    engine = make_engine(url)
    try:
        with engine.connect() as connection, warnings.catch_warnings():
            # Autogenerate cannot compare expression indexes (0016's email index): SQLite's
            # reflection says so and skips them; the models name them to be left alone.
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            opts = {"compare_type": True, "include_name": _not_an_expression_index}
            context = MigrationContext.configure(connection, opts=opts)
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _not_an_expression_index(name: str | None, type_: str, _parent: object) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


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


# Two release jobs at once (two deploys, or compose's release beside a Procfile's): the second
# must wait for the first and then find nothing to do.


def versions_at(url: str) -> list[str]:
    """Every row of alembic_version: one, the head, once a database is migrated."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            return list(versions.scalars())
    finally:
        engine.dispose()


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


# Alembic keeps its migration context in a module global: two upgrades in one process's
# threads would share it. Two release jobs are two processes, so the tests start processes.
UPGRADE_ON_CUE = (
    "import sys; from app.store.migrate import upgrade; print('ready', flush=True);"
    " sys.stdin.readline(); upgrade(sys.argv[1])"
)


def upgrade_process(url: str) -> subprocess.Popen[str]:
    """A process that imports everything, says `ready`, then upgrades `url` on a line of input."""
    process = subprocess.Popen(
        [sys.executable, "-c", UPGRADE_ON_CUE, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def go(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def outcome(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Its exit code and the exception it ended with, if any (`module.Error: message`)."""
    _, stderr = process.communicate(timeout=120)
    raised = [line for line in stderr.splitlines() if re.match(r"[A-Za-z_][\w.]*: ", line)]
    return process.returncode, raised[-1] if raised else ""


def upgrades_at_once(url: str) -> list[tuple[int, str]]:
    """Two upgrades of `url` started together, as two release jobs would be."""
    processes = [upgrade_process(url) for _ in range(2)]
    for process in processes:
        go(process)
    return [outcome(process) for process in processes]


def psycopg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_two_upgrades_at_once_on_one_fresh_postgresql_database_both_succeed() -> None:
    with fresh_postgres_database() as raw_url:
        url = psycopg_url(raw_url)
        assert upgrades_at_once(url) == [(0, ""), (0, "")]
        assert versions_at(url) == [head()]


def test_a_second_upgrade_waits_for_the_migration_lock_then_finds_nothing_to_do() -> None:
    with fresh_postgres_database() as raw_url:
        url = psycopg_url(raw_url)
        engine = make_engine(url)
        try:
            with engine.connect() as first:
                # The first release job: holds the lock while it migrates.
                first.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
                first.commit()
                second = upgrade_process(url)
                go(second)
                wait_until_waiting_for_an_advisory_lock(first, second)
                assert "alembic_version" not in table_names(first)  # it did nothing yet
                first.commit()
                with first.begin():
                    config = alembic_config()
                    config.attributes["connection"] = first
                    command.upgrade(config, "head")
                first.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                first.commit()
        finally:
            engine.dispose()
        assert outcome(second) == (0, "")
        assert versions_at(url) == [head()]


def wait_until_waiting_for_an_advisory_lock(
    connection: Connection, process: subprocess.Popen[str], within: float = 60
) -> None:
    """Returns once another session of this database waits for an advisory lock."""
    deadline = time.monotonic() + within
    while True:
        assert process.poll() is None, "the second upgrade did not wait: " + str(outcome(process))
        waiting = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).scalar()
        connection.commit()
        if waiting:
            return
        assert time.monotonic() < deadline, "the second upgrade never waited for the lock"
        time.sleep(0.05)


def test_two_upgrades_at_once_on_one_fresh_sqlite_file_both_succeed(tmp_path: Path) -> None:
    # SQLite serializes them by itself: every transaction takes the write lock up front
    # (BEGIN IMMEDIATE, app.store.db), and the second then sees the first's version.
    url = f"sqlite:///{tmp_path / 'race.sqlite'}"
    assert upgrades_at_once(url) == [(0, ""), (0, "")]
    assert versions_at(url) == [head()]


def test_a_second_sqlite_upgrade_waits_for_the_migration_lock_then_finds_nothing_to_do(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'waits.sqlite'}"
    lock_path = sqlite_lock_path(url)
    assert lock_path is not None
    with lock_path.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the first release job, migrating
        second = upgrade_process(url)
        go(second)
        wait_until_waiting_for_a_file_lock(second)
        with migrating(url) as (_, config):  # the first job's migration, under the lock held
            command.upgrade(config, "head")
    assert outcome(second) == (0, "")
    assert versions_at(url) == [head()]


def wait_until_waiting_for_a_file_lock(process: subprocess.Popen[str], within: float = 60) -> None:
    """Returns once `process` is blocked on a file lock (Linux lists waiters in /proc/locks)."""
    deadline = time.monotonic() + within
    while True:
        assert process.poll() is None, "the second upgrade did not wait: " + str(outcome(process))
        blocked = [line.split() for line in Path("/proc/locks").read_text().splitlines()]
        if any("->" in fields and str(process.pid) in fields for fields in blocked):
            return
        assert time.monotonic() < deadline, "the second upgrade never waited for the lock"
        time.sleep(0.05)
