"""Every `loke-sync` failure is one line, `Error: ...`, with exit status 1 (2 for a mistake in the
command line), whatever raised it; `--version`; every option says what it is for."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import click
import pytest
import redis
import requests
from click.testing import CliRunner, Result

from app.cli.errors import describe
from app.cli.main import main
from app.core.dispatch import BrokerUnavailable
from app.core.secrets_box import SecretKeyMismatch
from app.store.migrate import upgrade
from devtools.crm import FakeCrm
from tests.conftest import ADMIN_TOKEN, CRM_SECRET, HUBSPOT_TOKEN, SECRET_KEY, make_settings
from tests.support.cli import embedded_environment, use_environment
from tests.support.fake_loke import FakeLoke
from tests.support.processes import REDIS_BASE_URL, free_port, fresh_postgres_database

DEBUG_HINT = "(run again with LOKE_SYNC_DEBUG=1 for the traceback)"


@pytest.fixture
def runner(tmp_path: Path, loke: FakeLoke, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    use_environment(monkeypatch, embedded_environment(tmp_path, loke))
    upgrade(make_settings(tmp_path, loke).sqlalchemy_url)
    return CliRunner()


def one_error_line(result: Result) -> str:
    """The message of a command that failed as every command must: one `Error:` line, exit 1."""
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    [line] = result.output.splitlines()
    assert line.startswith("Error: "), line
    return line.removeprefix("Error: ")


def test_version_is_the_installed_packages(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert (result.exit_code, result.output) == (0, f"loke-sync {version('loke-crm-sync')}\n")


def test_calling_loke_without_the_add_ons_credentials(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOKE_CLIENT_ID")
    result = runner.invoke(main, ["orgs", "discover"])
    assert one_error_line(result) == (
        "LOKE_CLIENT_ID and LOKE_CLIENT_SECRET are needed to call LOKE"
    )


def test_invalid_input_names_the_field_and_what_is_wrong(
    runner: CliRunner, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.add_org("org-a")
    short = runner.invoke(main, ["orgs", "connect", "org-a", "--url", crm.url, "--secret", "short"])
    assert one_error_line(short) == "invalid secret: String should have at least 8 characters"
    connect = ["orgs", "connect", "org-a", "--url", crm.url, "--secret", CRM_SECRET]
    history = runner.invoke(main, [*connect, "--payment-history-since", "last tuesday"])
    assert "paymentHistorySince" in one_error_line(history)


def test_a_crm_that_cannot_be_reached_to_check_it(runner: CliRunner, loke: FakeLoke) -> None:
    loke.add_org("org-b")
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(main, ["orgs", "connect", "org-b", "--hubspot-token", HUBSPOT_TOKEN,
                                  "--hubspot-base-url", nowhere])  # fmt: skip
    assert one_error_line(result).startswith("could not reach the CRM to check it: ")


def test_an_invalid_setting(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")
    monkeypatch.setenv("ADMIN_TOKEN", "short")
    result = runner.invoke(main, ["status"])
    assert one_error_line(result).startswith("ADMIN_TOKEN must be at least 32 characters")


def test_a_database_that_cannot_be_reached(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    for name, value in (("DATABASE_URL", closed), ("CELERY_BROKER_URL", f"{REDIS_BASE_URL}/15"),
                        ("ADMIN_TOKEN", ADMIN_TOKEN), ("SECRET_KEY", SECRET_KEY)):  # fmt: skip
        monkeypatch.setenv(name, value)
    message = one_error_line(runner.invoke(main, ["orgs", "list"]))
    assert message.startswith("the database is unavailable (DATABASE_URL): "), message


@pytest.fixture(params=["sqlite", "postgresql"])
def no_schema(
    request: pytest.FixtureRequest, tmp_path: Path, loke: FakeLoke, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliRunner]:
    """The commands' environment on a database nobody has upgraded yet."""
    use_environment(monkeypatch, embedded_environment(tmp_path, loke))
    if request.param == "sqlite":
        yield CliRunner()
        return
    with fresh_postgres_database() as url:
        for name, value in (("DATABASE_URL", url), ("CELERY_BROKER_URL", f"{REDIS_BASE_URL}/15"),
                            ("ADMIN_TOKEN", ADMIN_TOKEN), ("SECRET_KEY", SECRET_KEY)):  # fmt: skip
            monkeypatch.setenv(name, value)
        yield CliRunner()


def test_a_database_without_the_schema_says_how_to_make_it(no_schema: CliRunner) -> None:
    message = one_error_line(no_schema.invoke(main, ["status"]))
    assert message.startswith("the database has no schema yet: run loke-sync db upgrade ("), message


def test_an_unexpected_error_is_one_line_too_and_debug_shows_the_traceback(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> list[object]:
        raise KeyError("surprise")

    monkeypatch.setattr("app.deadletters.listing.listing", broken)
    result = runner.invoke(main, ["dead-letters", "list"])
    assert one_error_line(result) == f"unexpected KeyError: 'surprise' {DEBUG_HINT}"
    monkeypatch.setenv("LOKE_SYNC_DEBUG", "1")
    debugged = runner.invoke(main, ["dead-letters", "list"])
    assert isinstance(debugged.exception, KeyError)


def test_usage_mistakes_keep_clicks_answer_and_status_2(runner: CliRunner) -> None:
    result = runner.invoke(main, ["run", "--port", "70000"])
    assert result.exit_code == 2
    assert "Invalid value for '--port': 70000 is not in the range 1<=x<=65535." in result.output


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (BrokerUnavailable("connection refused"),
         "the broker is unavailable (CELERY_BROKER_URL): connection refused"),
        (redis.ConnectionError("Error 111 connecting"),
         "Redis is unavailable (REDIS_URL): Error 111 connecting"),
        (requests.ConnectionError("refused"), "HTTP request failed: refused"),
        (SecretKeyMismatch("a stored secret cannot be decrypted:\n  wrong SECRET_KEY"),
         "a stored secret cannot be decrypted: wrong SECRET_KEY"),
        (RuntimeError("x" * 900), f"unexpected RuntimeError: {'x' * 474}… {DEBUG_HINT}"),
    ],
)  # fmt: skip
def test_what_each_kind_of_failure_says(raised: Exception, said: str) -> None:
    assert describe(raised) == said


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    """Every command under `group`, subgroups' included, with its command line."""
    for name, command in group.commands.items():
        yield " ".join((*path, name)), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def test_every_option_says_what_it_is_for_and_every_port_is_a_port() -> None:
    undocumented, ports = [], []
    for line, command in commands(main):
        for option in command.params:
            if not isinstance(option, click.Option) or option.name == "help":
                continue
            if not option.help:
                undocumented.append(f"{line} {option.opts[0]}")
            if option.opts[0].endswith("port"):
                kind = option.type
                is_port = isinstance(kind, click.IntRange) and (kind.min, kind.max) == (1, 65535)
                ports.append((f"{line} {option.opts[0]}", is_port))
    assert undocumented == []
    assert ports
    assert [name for name, is_port in ports if not is_port] == []
