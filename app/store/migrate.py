"""Bringing a database to the newest schema (the `release` process, `loke-sync db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.store.db import make_engine

ROOT = Path(__file__).resolve().parents[2]  # the checkout: alembic.ini, migrations/


def alembic_config() -> Config:
    """Alembic's configuration, with the migrations beside the code."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return config


def upgrade(database_url: str) -> None:
    """Idempotent: a database already at head is left as it is."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
