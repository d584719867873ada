"""`loke-sync demo`: sandbox + service + CRM on one machine, connected, with live traffic.

The CRM is the `http` destination's fake CRM (`--crm http`) or a fake HubSpot portal
(`--crm hubspot`). The sandbox and the demo CRM are thread servers in this process (the CRM's
fidelity view reads the sandbox's truth from memory); web, worker and beat are child processes
started and supervised exactly as `loke-sync run` does, on embedded defaults under their own
VAR_DIR, which is wiped at each start: the sandbox and the CRM keep everything in memory, so a
database left from an earlier demo would describe a world that no longer exists.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, Self

import click
import requests

from app.core.config import load_settings
from app.core.processes import LOCAL_HOST, browse_url, start_service, supervise
from devtools.demo.crm import DemoCrm
from devtools.demo.hubspot import DemoHubSpot
from devtools.demo.verdict import status_line
from devtools.sandbox.server import LokeSandbox
from devtools.sandbox.simulation import Simulator
from devtools.sandbox.standalone import Activity

ORG_ID = "org-demo"
ORG_NAME = "Harbour Cafe (demo)"
CLIENT_ID = "demo-addon"
MARKER = ".loke-sync-demo"  # only a folder carrying it is ever wiped
LIST_INTERVAL_SECONDS = 60  # the shortest the API accepts
STATUS_SECONDS = 5
SERVER_SETTINGS = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "ADMIN_TOKEN", "SECRET_KEY")
CrmKind = Literal["http", "hubspot"]


class DemoTarget(Protocol):
    """What the demo needs of its CRM (`DemoCrm` or `DemoHubSpot`)."""

    name: str  # "CRM" or "HubSpot": "<name> matches LOKE"
    list_ids: list[str]

    @property
    def url(self) -> str: ...
    def start(self) -> Self: ...
    def stop(self) -> None: ...
    def destination(self) -> dict[str, Any]: ...
    def report(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Ports:
    web: int = 8000
    sandbox: int = 8001
    crm: int = 8002
    host: str = LOCAL_HOST  # where the web listens (the sandbox and the CRM: 127.0.0.1 only)


def lists_for(customers: int) -> list[tuple[str, int]]:
    """Two lists the demo opts into and one it does not (choosing lists is a per-org setting)."""
    return [("VIP guests", max(5, customers // 20)), ("Newsletter", max(10, customers // 4)),
            ("Staff", min(12, customers))]  # fmt: skip


def run_demo(
    activity: Activity, ports: Ports, var_dir: Path, web_workers: int, crm_kind: CrmKind = "http"
) -> None:
    """Start everything, connect the demo organization, print where to look; Ctrl-C stops."""
    _fresh(var_dir)
    sandbox = activity.sandbox(CLIENT_ID, secrets.token_urlsafe(16), ports.sandbox)
    list_ids, rng = activity.populate(sandbox, ORG_ID, ORG_NAME, lists_for(activity.customers))
    chosen = [list_ids["VIP guests"], list_ids["Newsletter"]]
    web = browse_url(ports.host, ports.web).rstrip("/")
    simulator = Simulator(sandbox, ORG_ID, rng, list_ids=chosen)
    facts = partial(_page_facts, web, sandbox, simulator)  # read again at every refresh
    crm: DemoTarget
    if crm_kind == "hubspot":
        crm = DemoHubSpot(sandbox.snapshot, ORG_ID, chosen, facts, ports.crm)
        crm.prepare(sandbox)  # before the backfill, which must meet what it sets up
    else:
        secret = secrets.token_urlsafe(24)
        crm = DemoCrm(secret, sandbox.snapshot, ORG_ID, chosen, facts, ports.crm)
    sandbox.start()
    crm.start()
    failed, done = threading.Event(), threading.Event()
    log_path = var_dir / "service.log"
    try:
        _embedded_environment(var_dir, sandbox, web)
        settings = load_settings()
        click.echo(f"demo: web, worker and beat log to {log_path}")
        with log_path.open("ab") as log:
            processes = start_service(
                settings, ports.web, web_workers, output=log, announce=click.echo, host=ports.host
            )
            setup = threading.Thread(
                target=_connect_when_ready,
                args=(activity, web, settings.required_admin_token, sandbox, crm, simulator,
                      failed, done),
                name="demo-setup",
                daemon=True,
            )  # fmt: skip
            setup.start()
            code = supervise(
                processes, failed.is_set, announce=lambda line: click.echo(line, err=True)
            )
    finally:
        done.set()
        simulator.stop()
        crm.stop()
        sandbox.stop()
    if code:
        click.echo(f"demo: stopped with an error; see {log_path}", err=True)
    sys.exit(code)


def _fresh(var_dir: Path) -> None:
    if var_dir.exists() and any(var_dir.iterdir()):
        if not (var_dir / MARKER).exists():
            raise click.ClickException(f"{var_dir} is not a demo folder; choose another --var-dir")
        shutil.rmtree(var_dir)
    var_dir.mkdir(parents=True, exist_ok=True)
    (var_dir / MARKER).write_text("made by loke-sync demo; wiped at every demo start\n")


def _embedded_environment(var_dir: Path, sandbox: LokeSandbox, web: str) -> None:
    """This process's environment, inherited by web, worker and beat: no servers, our sandbox."""
    for name in SERVER_SETTINGS:
        if os.environ.pop(name, None) is not None:
            click.echo(f"demo: ignoring {name} (the demo always runs on embedded defaults)")
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.update(
        VAR_DIR=str(var_dir.resolve()),
        LOKE_API_URL=sandbox.url,
        LOKE_AUTH_URL=sandbox.url,
        LOKE_CLIENT_ID=sandbox.client_id,
        LOKE_CLIENT_SECRET=sandbox.client_secret,
        PUBLIC_URL=web,
        # The demo's CRM is on 127.0.0.1: embedded defaults allow that already, and so does this
        # should the demo ever run its processes against servers.
        ALLOW_PRIVATE_DESTINATIONS="1",
        LIST_DISPATCH_SECONDS="5",  # lists are first read seconds after connecting, not a minute
        # Payments whose webhooks the sandbox loses (--lost-payments) heal within the demo's
        # minute, not the quarter of an hour production waits.
        RECONCILE_INTERVAL_SECONDS="30",
    )


def _connect_when_ready(
    activity: Activity,
    web: str,
    token: str,
    sandbox: LokeSandbox,
    crm: DemoTarget,
    simulator: Simulator,
    failed: threading.Event,
    done: threading.Event,
) -> None:
    try:
        _wait_ready(web)
        body = {
            "name": ORG_NAME,
            "destination": crm.destination(),
            "lists": crm.list_ids,
            "listSyncIntervalSeconds": LIST_INTERVAL_SECONDS,
        }  # fmt: skip
        answer = requests.put(
            f"{web}/api/orgs/{ORG_ID}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"connecting {ORG_ID} answered {answer.status_code}: {answer.text}")
        activity.start(simulator)
    except Exception as exc:  # the demo is pointless half-started: stop everything
        click.echo(f"demo: setup failed: {exc}", err=True)
        failed.set()
        return
    fake_api = f"  HubSpot API     {crm.url}   (a fake portal)\n" if crm.name == "HubSpot" else ""
    click.echo(
        f"\nLOKE CRM sync demo is running ({activity.customers:,} customers,"
        f" {activity.rate:g} events/s, seed {activity.seed}):\n"
        f"  dashboard       {web}/   (admin token: {token})\n"
        f"  {crm.name + ' vs LOKE':<16}{crm.url}/demo/crm\n"
        f"  fidelity JSON   {crm.url}/demo/crm/fidelity.json\n"
        f"  LOKE sandbox    {sandbox.url}\n{fake_api}"
        "Ctrl-C stops everything."
    )
    while not done.wait(STATUS_SECONDS):
        line = status_line(crm.name, crm.report(), sandbox.firer.stats(), time.strftime("%H:%M:%S"))
        click.echo(line)


def _wait_ready(web: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{web}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the service at {web} was not ready within {timeout:.0f} s")


def _page_facts(web: str, sandbox: LokeSandbox, simulator: Simulator) -> dict[str, Any]:
    return {
        "dashboard_url": f"{web}/",
        "org_name": ORG_NAME,
        "list_interval": LIST_INTERVAL_SECONDS,
        "webhooks": sandbox.firer.stats(),
        "events": dict(simulator.counts),
    }
