"""Fault-suite fixtures: private Redis and PostgreSQL servers for the whole session (a fresh
database and an emptied Redis per scenario), real processes with short clocks, the same
environment delivering to a fake HubSpot portal, and the table of every scenario's figures
printed at the end of the run."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter

from app.store.migrate import upgrade
from devtools.crm import FakeCrm
from tests.faults import hubspot
from tests.faults.harness import FaultEnv
from tests.faults.report import ARTIFACTS, WRITTEN, table
from tests.support.fake_loke import FakeLoke
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.processes import (
    ROOT,
    SHORT_CLOCKS,
    Stack,
    free_port,
    fresh_postgres_database,
    service_env,
)

FAULT_CLOCKS = SHORT_CLOCKS | {
    "LOKE_TIMEOUT_SECONDS": "1.5",
    "BACKFILL_RETRY_BASE_SECONDS": "0.5",
    "BACKFILL_STALL_SECONDS": "3",
}


@pytest.fixture(scope="session")
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()  # initdb once: a cluster per scenario would cost CI seconds
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    """This session's reports only, so the table shows one run."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)


@pytest.fixture
def fault_env(
    private_redis: PrivateRedis,
    private_postgres: PrivatePostgres,
    loke: FakeLoke,
    crm: FakeCrm,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[FaultEnv]:
    private_postgres.ensure_running()
    private_redis.ensure_running()
    private_redis.flushall()
    crm.delay(0.05, up_to=0.3)  # a real CRM's answer to a batch
    with fresh_postgres_database("lokesync_faults", private_postgres.admin_url) as database_url:
        upgrade(database_url)
        port = free_port()
        metrics_dir = tmp_path / "metrics"
        metrics_dir.mkdir()
        env = service_env(database_url, private_redis.url, loke.url, port)
        env |= FAULT_CLOCKS | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        log_dir = ROOT / "artifacts" / "logs" / "faults" / request.node.name[:80]
        shutil.rmtree(log_dir, ignore_errors=True)
        stack = Stack(env, log_dir)
        try:
            yield FaultEnv(stack, loke, crm, database_url, private_redis, private_postgres)
        finally:
            stack.stop_all()
            private_postgres.ensure_running()  # a failed scenario may have left it down


@pytest.fixture
def hubspot_fault_env(fault_env: FaultEnv) -> Iterator[FaultEnv]:
    """`fault_env` whose organization delivers to a fake HubSpot portal (destination type
    `hubspot`, with HubSpot's latency and limits) instead of the recording CRM."""
    with hubspot.fake_portal() as portal:
        fault_env.stack.env |= hubspot.HUBSPOT_CLOCKS  # before any process starts
        yield dataclasses.replace(fault_env, hubspot=portal)


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if WRITTEN:
        reports = sorted(WRITTEN, key=lambda r: r.scenario)
        terminalreporter.section("fault scenarios")
        terminalreporter.write_line(table(reports))
        (ARTIFACTS / "summary.md").write_text(table(reports) + "\n")
