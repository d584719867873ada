"""A newcomer's first hour, on real processes, from the README's quick start as written.

The sandbox, the CRM and `make run` each run in a terminal of their own, with the commands and
exports of README.md; then the README's connect example, parsed out of README.md too, until the
sandbox's customers are in the CRM; then the README's `webhook send` example; and the connect
refused when LOKE's credentials are missing. Only what the README tells a reader to change is
changed: its ports (8000, 8001, 8002) become free ones, `.venv/bin/` is this virtualenv's, and
the sandbox is made smaller and its webhooks finite, so that the counts settle in a test's time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import ROOT, free_port
from tests.support.readme import Block, block_with, blocks, exports, section
from tests.support.terminals import Terminal, answers, open_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

QUICK_START = "Quick start against the sandbox"
BY_HAND = "Sending a webhook by hand"
ORG = "org-sandbox"
BIN = Path(sys.executable).parent
CUSTOMERS = 300  # the sandbox seeds 2,000 by default: fewer, for a test's time
EVENTS = 40  # then the sandbox stops firing webhooks, and the counts can settle
CREDENTIALS = ("LOKE_CLIENT_ID", "LOKE_CLIENT_SECRET")
SANDBOX_PRINTS = {"LOKE_API_URL", "LOKE_AUTH_URL", *CREDENTIALS}  # the variables it prints
SETTLE_SECONDS = 180.0  # a bound for a stuck pipeline, not an expectation of speed
Seen = TypeVar("Seen")
SHELL_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")  # a fresh shell has none of ours


@dataclass(frozen=True)
class Ports:
    """Free ports in place of the README's 8000 (the service), 8001 (the sandbox) and 8002
    (the CRM)."""

    web: int
    sandbox: int
    crm: int

    @classmethod
    def free(cls, **taken: int) -> Ports:
        """Three distinct free ports, but those given."""
        chosen = dict(taken)
        for name in ("web", "sandbox", "crm"):
            while name not in chosen:
                port = free_port()
                if port not in chosen.values():
                    chosen[name] = port
        return cls(**chosen)

    def localize(self, text: str) -> str:
        """`text` as this test must type it: the README's ports replaced by these, and
        `.venv/bin/` by this virtualenv's."""
        ports = {"8000": self.web, "8001": self.sandbox, "8002": self.crm}
        text = re.sub(r"\b800[012]\b", lambda found: str(ports[found.group()]), text)
        return text.replace(".venv/bin/", f"{BIN}/")

    @property
    def service(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.web}"


@dataclass
class QuickStart:
    """The README's quick start, running: its blocks, its ports, its terminals."""

    found: list[Block]
    ports: Ports
    workdir: Path
    service_env: dict[str, str]  # terminal 3's: a fresh shell with the README's exports
    terminals: dict[str, Terminal]

    def token(self) -> str:
        """The admin token `make run` generated."""
        return (self.workdir / "var" / "admin-token").read_text().strip()

    def api(self, path: str) -> requests.Response:
        """GET an admin API path of the service."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        return requests.get(f"{self.ports.service}/api{path}", headers=headers, timeout=10)

    def logs(self) -> str:
        """Every terminal's last lines, for a failure's message."""
        return "".join(terminal.tail() for terminal in self.terminals.values())


def fresh_shell() -> dict[str, str]:
    """The environment of a newcomer's new terminal: none of this test run's variables."""
    return {name: os.environ[name] for name in SHELL_VARIABLES if name in os.environ}


def readme_exports(found: list[Block], ports: Ports) -> dict[str, str]:
    """The variables terminal 3 exports before `make run`, at these ports."""
    lines = block_with(found, "make run").commands()
    assert lines[-1] == "make run", f"terminal 3 should end with `make run`: {lines}"
    variables: dict[str, str] = {}
    for line in lines[:-1]:
        variables |= exports(ports.localize(line))
    return variables


def make_run(port: int) -> list[str]:
    """What `make run` runs (the Makefile's recipe, with this virtualenv's bin), on `port`
    (`PORT=… make run`, as the README says for another port)."""
    recipe = re.search(r"^run:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe is not None, "the Makefile has no `run` target"
    return [*shlex.split(recipe.group(1).replace("$(BIN)", str(BIN))), "--port", str(port)]


def start_service(name: str, ports: Ports, env: dict[str, str], workdir: Path) -> Terminal:
    """`make run` in `workdir`, waited on until it is ready."""
    service = open_terminal(name, make_run(ports.web), env, workdir, workdir / "logs")
    service.wait_until(answers(f"{ports.service}/readyz"), timeout=90)
    return service


def run_curl(command: str, ports: Ports, workdir: Path) -> tuple[int, Any]:
    """Run a README `curl` line in a shell in `workdir` (its `$(cat var/admin-token)`
    included); returns the HTTP status and the JSON answer."""
    line = ports.localize(command)
    assert line.startswith("curl "), line
    answer = workdir / "answer.json"
    answer.unlink(missing_ok=True)
    shell = f"curl -sS -o {shlex.quote(str(answer))} -w '%{{http_code}}' {line[5:]}"
    done = subprocess.run(["sh", "-c", shell], cwd=workdir, env=fresh_shell(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, f"{line}\n{done.stderr}"
    text = answer.read_text() if answer.exists() else ""
    return int(done.stdout), json.loads(text) if text.strip() else None


def printed_exports(output: str) -> dict[str, str]:
    """The `export NAME=value` lines a command printed."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        if line.strip().startswith("export "):
            found |= exports(line.strip())
    return found


def wait_for(check: Callable[[], tuple[bool, Seen]], timeout: float, why: str) -> Seen:
    """Poll `check` (done, what it saw) until done, bounded; fail with what it saw last."""
    deadline = time.monotonic() + timeout
    while True:
        done, seen = check()
        if done:
            return seen
        if time.monotonic() >= deadline:
            raise AssertionError(f"{why} within {timeout:g} s; last seen: {seen}")
        time.sleep(0.5)


def accepted_webhooks(base: str) -> float:
    """Webhooks the service accepted, from its /metrics."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    return float(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "loke_sync_webhooks_total"
            and sample.labels.get("answer") == "accepted"
        )
    )


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuickStart]:
    """Terminals 1 to 3 of the quick start: the sandbox, the CRM, `make run`."""
    workdir = tmp_path_factory.mktemp("newcomer")
    found = blocks(section(QUICK_START))
    ports = Ports.free()
    shell, logs = fresh_shell(), workdir / "logs"
    started = QuickStart(found, ports, workdir, shell | readme_exports(found, ports), {})
    sandbox_line = ports.localize(block_with(found, "loke-sync sandbox").commands()[0])
    crm_line = ports.localize(block_with(found, "devtools.crm").commands()[0])
    sandbox_argv = [*shlex.split(sandbox_line), "--port", str(ports.sandbox),
                    "--customers", str(CUSTOMERS), "--max-events", str(EVENTS)]  # fmt: skip
    try:
        sandbox = open_terminal("sandbox", sandbox_argv, shell, workdir, logs)
        started.terminals["sandbox"] = sandbox
        crm = open_terminal("crm", shlex.split(crm_line), shell, workdir, logs)
        started.terminals["crm"] = crm
        sandbox.wait_until(lambda: printed_exports(sandbox.output()).keys() >= SANDBOX_PRINTS)
        crm.wait_until(answers(f"http://127.0.0.1:{ports.crm}/healthz"))
        started.terminals["run"] = start_service("run", ports, started.service_env, workdir)
        yield started
    finally:
        stopped = []
        for terminal in reversed(started.terminals.values()):
            try:
                terminal.stop()
            except AssertionError as exc:
                stopped.append(str(exc))
        assert not stopped, "\n".join(stopped)


@pytest.fixture(scope="module")
def connected(quick_start: QuickStart) -> tuple[int, Any]:
    """Terminal 4: the README's connect example, as written (its ports excepted)."""
    command = block_with(quick_start.found, "curl -X PUT").commands()[0]
    return run_curl(command, quick_start.ports, quick_start.workdir)


def test_readme_exports_are_what_the_sandbox_prints(quick_start: QuickStart) -> None:
    printed = printed_exports(quick_start.terminals["sandbox"].output())
    written = {name: quick_start.service_env.get(name) for name in printed}
    assert written == printed


def test_readme_connect_example_brings_the_sandbox_customers_to_the_crm(
    quick_start: QuickStart, connected: tuple[int, Any]
) -> None:
    status, answer = connected
    assert status == 201, f"{answer}{quick_start.logs()}"
    assert answer["connected"] is True
    crm_stats = f"http://127.0.0.1:{quick_start.ports.crm}/stats?org={ORG}"

    def settled() -> tuple[bool, dict[str, Any]]:
        org = quick_start.api(f"/orgs/{ORG}").json()
        crm = requests.get(crm_stats, timeout=10).json()
        webhooks = accepted_webhooks(quick_start.ports.service)
        seen = {"backfill": (org["backfill"] or {}).get("status"), "stored": org["customers"],
                "backlog": org["delivery"]["backlog"], "inCrm": crm["customers"],
                "crmErrors": crm["errors"], "webhooks": webhooks}  # fmt: skip
        done = (seen["backfill"] == "finished" and seen["backlog"] == 0 and webhooks > 0
                and crm["customers"] == org["customers"] >= CUSTOMERS)  # fmt: skip
        return done, seen

    try:
        seen = wait_for(settled, SETTLE_SECONDS, "the sandbox's customers did not reach the CRM")
    except AssertionError as exc:
        raise AssertionError(f"{exc}{quick_start.logs()}") from None
    assert seen["crmErrors"] == []  # every batch was signed and well formed


def test_readme_webhook_send_example_reaches_the_crm(
    quick_start: QuickStart, connected: tuple[int, Any]
) -> None:
    assert connected[0] == 201, connected[1]
    found = blocks(section(BY_HAND))
    body = block_with(found, '"event"', language="json").text
    words = shlex.split(quick_start.ports.localize(block_with(found, "webhook send").commands()[0]))
    file_name = next(word for word in words if word.endswith(".json"))
    (quick_start.workdir / file_name).write_text(body)  # saved as the README says
    done = subprocess.run(words, cwd=quick_start.workdir, env=quick_start.service_env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    customer_id = json.loads(body)["customer"]["id"]

    def delivered() -> tuple[bool, object]:
        answer = quick_start.api(f"/orgs/{ORG}/customers/{customer_id}")
        if answer.status_code != 200:
            return False, answer.status_code
        deliveries = answer.json()["delivery"]
        settled = [d for d in deliveries if not d["pending"] and d["lastError"] is None]
        return bool(deliveries) and settled == deliveries, deliveries

    try:
        wait_for(delivered, SETTLE_SECONDS, f"{customer_id} was not delivered")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{done.stdout}{quick_start.logs()}") from None


def test_connect_without_loke_credentials_is_refused_and_leaves_nothing(
    quick_start: QuickStart, tmp_path: Path
) -> None:
    # The newcomer forgot terminal 3's credentials; the sandbox and the CRM are there.
    ports = Ports.free(sandbox=quick_start.ports.sandbox, crm=quick_start.ports.crm)
    env = fresh_shell() | readme_exports(quick_start.found, ports)
    for name in CREDENTIALS:
        del env[name]
    service = start_service("run-without-credentials", ports, env, tmp_path)
    try:
        token = (tmp_path / "var" / "admin-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        command = block_with(quick_start.found, "curl -X PUT").commands()[0]
        status, answer = run_curl(command, ports, tmp_path)
        assert 400 <= status < 500, f"{status} {answer}{service.tail()}"
        assert "error" in answer, answer
        org = requests.get(f"{ports.service}/api/orgs/{ORG}", headers=headers, timeout=10)
        assert org.status_code == 404, org.text  # nothing left half-connected

        cli = ports.localize(block_with(quick_start.found, "loke-sync orgs connect").commands()[0])
        done = subprocess.run(shlex.split(cli), cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        said = (done.stdout + done.stderr).strip()
        assert done.returncode != 0, said
        assert said.splitlines()[-1].startswith("Error: "), said
        assert "Traceback" not in said, said
        org = requests.get(f"{ports.service}/api/orgs/{ORG}", headers=headers, timeout=10)
        assert org.status_code == 404, org.text
    finally:
        service.stop()
