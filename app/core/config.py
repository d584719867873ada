"""Configuration, read once from the environment into one typed object."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(SystemExit):
    """A missing or invalid setting: stops start-up with one line naming it."""


class Settings(BaseSettings):
    """Every knob of the service. Names match the environment variables in the README."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str | None = None
    celery_broker_url: str | None = None
    redis_url: str | None = None
    loke_api_url: str = "https://api.loke.global"
    loke_auth_url: str = "https://auth.loke.global"
    loke_client_id: str | None = None
    loke_client_secret: str | None = None
    public_url: str = "http://localhost:8000"
    admin_token: str | None = None
    secret_key: str | None = None
    # The key stored secrets were encrypted with before SECRET_KEY: still read while
    # `loke-sync reencrypt` rewrites them under SECRET_KEY.
    secret_key_previous: str | None = None
    # When set, /metrics asks for `Authorization: Bearer METRICS_TOKEN`.
    metrics_token: str | None = None
    # Destinations on loopback, link-local or private addresses are refused unless this is
    # set (the embedded mode and the demo allow them: there the CRM is on this machine).
    allow_private_destinations: bool = False
    # After a webhook secret is rotated, LOKE may still sign with the old one for this long.
    webhook_secret_grace_seconds: float = Field(default=86400.0, ge=0)
    # Failed sign-ins and admin API tokens allowed per client address per minute.
    auth_failures_per_minute: int = Field(default=10, ge=1)
    # Proxies in front of the web process whose X-Forwarded-For/-Proto are true: without it,
    # behind a load balancer every client has the balancer's address.
    trusted_proxy_hops: int = Field(default=0, ge=0, le=5)
    webhook_ref: str = "loke-crm-sync"
    list_sync_interval: int = Field(default=3600, ge=60)
    list_dispatch_seconds: float = Field(default=60.0, gt=0)  # how often beat looks for due lists
    var_dir: Path = Path("var")
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    # json, text, or auto: text on a terminal, JSON otherwise (app.core.logs reads it too, in
    # gunicorn's master before these settings exist).
    log_format: str = Field(default="auto", pattern="^(?i:auto|json|text)$")

    # Tuning. Defaults suit production; tests shorten the clocks.
    inbox_batch_size: int = Field(default=200, ge=1, le=5000)
    inbox_sweep_after_seconds: float = Field(default=30.0, gt=0)
    sweep_interval_seconds: float = Field(default=15.0, gt=0)
    outbox_sweep_after_seconds: float = Field(default=20.0, gt=0)
    delivery_max_attempts: int = Field(default=12, ge=1)
    delivery_backoff_base_seconds: float = Field(default=2.0, gt=0)
    delivery_backoff_max_seconds: float = Field(default=600.0, gt=0)
    delivery_timeout_seconds: float = Field(default=20.0, gt=0)
    delivery_lease_seconds: float = Field(default=90.0, gt=0)
    # After HubSpot's daily limit, its account is tried again after this at the latest (when
    # the daily window resets is not documented).
    hubspot_daily_recheck_seconds: float = Field(default=3600.0, gt=0)
    loke_timeout_seconds: float = Field(default=15.0, gt=0)
    backfill_page_attempts: int = Field(default=6, ge=1)
    backfill_retry_base_seconds: float = Field(default=15.0, gt=0)
    backfill_stall_seconds: float = Field(default=300.0, gt=0)
    reconcile_interval_seconds: float = Field(default=900.0, ge=10)
    reconcile_overlap_seconds: float = Field(default=600.0, ge=0)

    # Retention: a beat task deletes what is older than this (days; see README "Retention").
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    retain_event_bodies_days: float = Field(default=7.0, gt=0)  # applied events' bodies
    retain_applied_events_days: float = Field(default=30.0, gt=0)  # applied events themselves
    retain_replayed_dead_letters_days: float = Field(default=30.0, gt=0)
    retain_finished_runs_days: float = Field(default=90.0, gt=0)  # backfill and list runs

    @model_validator(mode="after")
    def _timeouts_fit_lease(self) -> Settings:
        # A lease shorter than a send could let a second batch carry a customer whose first
        # batch is still unanswered.
        if self.delivery_lease_seconds <= self.delivery_timeout_seconds * 2:
            raise ValueError("DELIVERY_LEASE_SECONDS must exceed twice DELIVERY_TIMEOUT_SECONDS")
        return self

    @property
    def embedded(self) -> bool:
        """True when no servers were configured: SQLite and a SQLite broker under var_dir."""
        return self.database_url is None and self.celery_broker_url is None

    @property
    def private_destinations_allowed(self) -> bool:
        """Whether a destination may be on this machine's or a private network."""
        return self.allow_private_destinations or self.embedded

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL as SQLAlchemy takes it, else the embedded SQLite file."""
        if self.database_url:
            # Heroku-style URLs say postgres://, which SQLAlchemy 2 no longer accepts.
            return self.database_url.replace("postgres://", "postgresql://", 1)
        return f"sqlite:///{(self.var_dir / 'loke-sync.sqlite').resolve()}"

    @property
    def broker_url(self) -> str:
        """CELERY_BROKER_URL, else the embedded SQLite broker."""
        if self.celery_broker_url:
            return self.celery_broker_url
        return f"sqla+sqlite:///{(self.var_dir / 'broker.sqlite').resolve()}"

    @property
    def shared_redis_url(self) -> str | None:
        """Redis for kicks and locks: REDIS_URL, else the broker when the broker is Redis."""
        if self.redis_url:
            return self.redis_url
        if self.celery_broker_url and self.celery_broker_url.startswith(("redis://", "rediss://")):
            return self.celery_broker_url
        return None

    @property
    def required_admin_token(self) -> str:
        """ADMIN_TOKEN (always set once `load_settings` has started the process)."""
        if not self.admin_token:  # load_settings() refuses to start without it
            raise ConfigError("missing required setting ADMIN_TOKEN")
        return self.admin_token

    @property
    def required_secret_key(self) -> str:
        """SECRET_KEY (always set once `load_settings` has started the process)."""
        if not self.secret_key:  # load_settings() refuses to start without it
            raise ConfigError("missing required setting SECRET_KEY")
        return self.secret_key


MIN_SECRET_LENGTH = 32


def _embedded_secret(var_dir: Path, name: str) -> str:
    """A dev-mode secret generated once and kept under var/, so restarts can still decrypt."""
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def load_settings(**overrides: object) -> Settings:
    """Read the environment; fill dev-mode secrets; fail with one line naming what is missing."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "configuration"
        raise ConfigError(f"invalid setting {name}: {first['msg']}") from None
    if settings.embedded:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        if settings.admin_token is None:
            settings.admin_token = _embedded_secret(settings.var_dir, "admin-token")
        if settings.secret_key is None:
            settings.secret_key = _embedded_secret(settings.var_dir, "secret-key")
    for name in ("admin_token", "secret_key"):
        value = getattr(settings, name)
        if not value:
            raise ConfigError(f"missing required setting {name.upper()}")
        # A short token can be guessed and a short key brute-forced offline from a database
        # dump; the embedded mode generates its own and is for one machine.
        if not settings.embedded and len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{name.upper()} must be at least {MIN_SECRET_LENGTH} characters "
                f"(try: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    return settings
