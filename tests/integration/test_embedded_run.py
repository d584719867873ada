"""`loke-sync run` on embedded defaults: no servers, everything under ./var/, the whole pipeline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.crm import FakeCrm
from tests.conftest import CRM_SECRET, LOKE_CLIENT_ID, LOKE_CLIENT_SECRET
from tests.support.fake_loke import FakeLoke, post_webhook
from tests.support.process_groups import assert_group_gone
from tests.support.processes import free_port
from tests.support.streams import make_stream, mismatches

ORG = "org-embedded"


@pytest.fixture
def embedded(tmp_path: Path, loke: FakeLoke) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL",
                                                            "REDIS_URL", "ADMIN_TOKEN",
                                                            "SECRET_KEY"}}  # fmt: skip
    env |= {
        "PORT": str(port),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LOKE_API_URL": loke.url,
        "LOKE_AUTH_URL": loke.url,
        "LOKE_CLIENT_ID": LOKE_CLIENT_ID,
        "LOKE_CLIENT_SECRET": LOKE_CLIENT_SECRET,
    }
    script = Path(sys.executable).parent / "loke-sync"
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [str(script), "run"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        yield base, tmp_path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        finally:
            log.close()
    # Stopping `run` stops web, worker and beat: nothing of its process group is left.
    assert_group_gone(process.pid)


def test_run_on_embedded_defaults_serves_webhooks_and_delivers_them(
    embedded: tuple[str, Path], loke: FakeLoke, crm: FakeCrm
) -> None:
    base, workdir = embedded
    token = (workdir / "var" / "admin-token").read_text().strip()
    loke.add_org(ORG)
    answer = requests.put(
        f"{base}/api/orgs/{ORG}",
        json={"destination": {"type": "http", "url": crm.url, "secret": CRM_SECRET}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    stream = make_stream(ORG, customers=20)
    secret = loke.secret_for(ORG)
    for event in stream.events:
        assert post_webhook(f"{base}/webhooks/loke/{ORG}", event, secret)[0] == 202

    def matches(c: FakeCrm) -> bool:
        return not mismatches(stream.truth, ORG, c.contacts, c.payments)

    assert crm.wait_for(matches, timeout=90), (workdir / "run.log").read_text()[-3000:]
    assert crm.violations() == []
    assert (workdir / "var" / "loke-sync.sqlite").exists()
