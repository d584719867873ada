"""Integration fixtures: a fresh PostgreSQL database, a Redis database, real processes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from app.store.migrate import upgrade
from devtools.crm import FakeCrm
from tests.conftest import (
    AUTH,
    destination,
)
from tests.support.fake_loke import FakeLoke
from tests.support.processes import (
    ROOT,
    SHORT_CLOCKS,
    Stack,
    free_port,
    fresh_postgres_database,
    fresh_redis_database,
    service_env,
)

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration/ is an `integration` test (`-m "not integration"`
    leaves them out), whether its module says so or not: a `pytestmark` here would not do it,
    as pytest reads `pytestmark` from test modules only. The hook sees the whole session's
    items, so it marks only those below this directory."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def database_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    with fresh_redis_database() as url:
        yield url


@pytest.fixture
def stack(
    database_url: str,
    redis_url: str,
    loke: FakeLoke,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Stack]:
    """Processes configured like production, with short clocks so faults heal in seconds."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = service_env(database_url, redis_url, loke.url, port) | {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **SHORT_CLOCKS,
    }
    log_dir = ROOT / "artifacts" / "logs" / request.node.name[:80]
    shutil.rmtree(log_dir, ignore_errors=True)  # this run's logs only
    started = Stack(env, log_dir)
    yield started
    started.stop_all()


def web_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.env['PORT']}"


def connect_org(stack: Stack, loke: FakeLoke, crm: FakeCrm, org_id: str, **dest: object) -> str:
    """Connect through the admin API as an operator would; returns the webhook secret."""
    loke.add_org(org_id)
    answer = requests.put(
        f"{web_url(stack)}/api/orgs/{org_id}",
        json={"destination": destination(crm, **dest)},
        headers=AUTH,
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return loke.secret_for(org_id)


@pytest.fixture
def artifacts() -> Path:
    path = ROOT / "artifacts"
    path.mkdir(exist_ok=True)
    return path
