"""SECRET_KEY rotation: SECRET_KEY_PREVIOUS still opens what the old key stored, `loke-sync
reencrypt` rewrites every stored secret under SECRET_KEY, and after it the new key alone does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app.cli.service import reencrypt as reencrypt_command
from app.core.config import Settings
from app.core.reencrypt import encrypted_columns, reencrypt_stored_secrets
from app.core.secrets_box import SecretBox, SecretKeyMismatch
from app.core.services import Services
from app.factory import create_app
from app.store.db import Database, utcnow
from app.store.migrate import upgrade
from app.store.models import Base, Organization
from tests.conftest import RecordingDispatcher, services_of

OLD_KEY = "the-old-secret-key-of-this-service-0123456789"
NEW_KEY = "the-new-secret-key-of-this-service-9876543210"
STRANGER_KEY = "a-key-this-service-never-had-0123456789abcdef"

# What each organization stores (plaintext): its webhook secret and its destination's secret.
STORED = {
    "org-a": ("webhook-secret-a", "crm-secret-a"),
    "org-b": ("webhook-secret-b", None),  # a destination without a stored secret
}


def test_the_naming_convention_finds_every_known_encrypted_column() -> None:
    found = {f"{column.table.name}.{column.name}" for column in encrypted_columns(Base.metadata)}
    assert {"organizations.webhook_secret_enc", "organizations.destination_secret_enc"} <= found
    assert all(name.endswith("_enc") for name in found)


@pytest.fixture
def stored_under_old_key(settings_on_each_store: Settings) -> Settings:
    """A migrated store holding STORED encrypted under OLD_KEY."""
    url = settings_on_each_store.sqlalchemy_url
    upgrade(url)
    old = SecretBox(OLD_KEY)
    db = Database(url)
    try:
        with db.transaction() as session:
            for org_id, (webhook_secret, destination_secret) in STORED.items():
                session.add(
                    Organization(
                        id=org_id,
                        webhook_secret_enc=old.encrypt(webhook_secret),
                        destination={"type": "http", "url": "http://crm.example/in"},
                        destination_secret_enc=(
                            old.encrypt(destination_secret) if destination_secret else None
                        ),
                        created_at=utcnow(),
                        updated_at=utcnow(),
                    )
                )
    finally:
        db.dispose()
    return settings_on_each_store


@contextmanager
def started(settings: Settings, **keys: str | None) -> Iterator[Services]:
    """The services of a process started with these keys (as `create_app` builds them)."""
    flask_app = create_app(settings.model_copy(update=keys), RecordingDispatcher())
    try:
        yield services_of(flask_app)
    finally:
        services_of(flask_app).db.dispose()


def decrypted(services: Services) -> dict[str, tuple[str, str | None]]:
    """Every organization's secrets, opened by the process's own box."""
    box = services.box
    with services.db.transaction() as session:
        return {
            org.id: (
                box.decrypt(org.webhook_secret_enc),
                box.decrypt(org.destination_secret_enc) if org.destination_secret_enc else None,
            )
            for org in session.scalars(select(Organization))
        }


def run_reencrypt(settings: Settings, **keys: str) -> tuple[int, str]:
    """`loke-sync reencrypt` against this store, with these keys in the environment."""
    env = {
        "DATABASE_URL": settings.sqlalchemy_url,
        "VAR_DIR": str(settings.var_dir),
        "ADMIN_TOKEN": settings.required_admin_token,
        "SECRET_KEY_PREVIOUS": "",
    } | keys
    result = CliRunner().invoke(reencrypt_command, [], env=env)
    return result.exit_code, result.output


def test_a_rotated_key_reads_the_old_secrets_and_reencrypt_leaves_the_new_key_alone_enough(
    stored_under_old_key: Settings,
) -> None:
    settings = stored_under_old_key
    # Before anything is rewritten, the new key alone cannot read what the old one stored.
    with (
        started(settings, secret_key=NEW_KEY, secret_key_previous=None) as services,
        pytest.raises(SecretKeyMismatch, match="SECRET_KEY"),
    ):
        decrypted(services)
    # With the old key as SECRET_KEY_PREVIOUS the service reads it all, and writes new secrets
    # under the new key.
    with started(settings, secret_key=NEW_KEY, secret_key_previous=OLD_KEY) as services:
        assert decrypted(services) == STORED
        assert SecretBox(NEW_KEY).decrypt(services.box.encrypt("fresh")) == "fresh"

    code, output = run_reencrypt(settings, SECRET_KEY=NEW_KEY, SECRET_KEY_PREVIOUS=OLD_KEY)
    assert (code, output.strip()) == (0, "rewrote 3 stored secrets under SECRET_KEY")
    # Idempotent: a second run finds everything under SECRET_KEY already.
    code, output = run_reencrypt(settings, SECRET_KEY=NEW_KEY, SECRET_KEY_PREVIOUS=OLD_KEY)
    assert (code, output.strip()) == (0, "rewrote 0 stored secrets under SECRET_KEY")

    with started(settings, secret_key=NEW_KEY, secret_key_previous=None) as services:
        assert decrypted(services) == STORED
    with (
        started(settings, secret_key=OLD_KEY, secret_key_previous=None) as services,
        pytest.raises(SecretKeyMismatch),
    ):
        decrypted(services)


def test_reencrypt_fails_in_one_line_on_a_secret_neither_key_opens(
    stored_under_old_key: Settings,
) -> None:
    settings = stored_under_old_key
    code, output = run_reencrypt(settings, SECRET_KEY=NEW_KEY, SECRET_KEY_PREVIOUS=STRANGER_KEY)
    assert code != 0
    [line] = output.strip().splitlines()
    assert "organizations.webhook_secret_enc" in line
    assert "org-a" in line
    assert "SECRET_KEY_PREVIOUS" in line
    # Nothing it could not open was touched: the right keys still read every secret.
    with started(settings, secret_key=NEW_KEY, secret_key_previous=OLD_KEY) as services:
        assert decrypted(services) == STORED


def test_secrets_box_reencrypted_says_none_for_a_secret_already_under_the_key() -> None:
    old, rotating = SecretBox(OLD_KEY), SecretBox(NEW_KEY, previous=OLD_KEY)
    token = rotating.reencrypted(old.encrypt("s"))
    assert token is not None
    assert SecretBox(NEW_KEY).decrypt(token) == "s"
    assert rotating.reencrypted(token) is None
    with pytest.raises(SecretKeyMismatch):
        rotating.reencrypted(SecretBox(STRANGER_KEY).encrypt("s"))


def test_reencrypt_walks_the_rows_in_batches_and_counts_only_what_it_rewrote(
    stored_under_old_key: Settings,
) -> None:
    url = stored_under_old_key.sqlalchemy_url
    rotating = SecretBox(NEW_KEY, previous=OLD_KEY)
    assert reencrypt_stored_secrets(url, rotating, batch_rows=1) == 3
    assert reencrypt_stored_secrets(url, rotating, batch_rows=1) == 0
    with started(stored_under_old_key, secret_key=NEW_KEY, secret_key_previous=None) as services:
        assert decrypted(services) == STORED
