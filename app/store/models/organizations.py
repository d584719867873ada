"""The organizations this service is connected to."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.store.models.base import Base


class Organization(Base):
    """A LOKE organization this service is connected to, and where its data goes."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    connected: Mapped[bool] = mapped_column(Boolean, default=True)
    webhook_secret_enc: Mapped[str] = mapped_column(Text)
    # After a rotation, the secret LOKE signed with before: still accepted until the time
    # below, for deliveries LOKE signed before it took the new one (app/orgs/secret_rotation.py).
    webhook_secret_previous_enc: Mapped[str | None] = mapped_column(Text)
    webhook_secret_previous_until: Mapped[dt.datetime | None]
    destination: Mapped[dict[str, Any]]  # without its secret
    destination_secret_enc: Mapped[str | None] = mapped_column(Text)
    lists: Mapped[list[Any]] = mapped_column(default=list)
    list_sync_interval_seconds: Mapped[int | None] = mapped_column(Integer)
    # How far back a backfill reads payments (see app/backfill/payment_history.py).
    payment_history: Mapped[str] = mapped_column(String(40), default="days:365")
    subscription_status: Mapped[str] = mapped_column(String(16), default="pending")
    subscription_error: Mapped[str | None] = mapped_column(Text)
    subscription_checked_at: Mapped[dt.datetime | None]
    # Reconciliation: the sweep walks back to here (minus an overlap); set to each sweep's start.
    reconciled_until: Mapped[dt.datetime | None]
    reconciled_at: Mapped[dt.datetime | None]
    lists_synced_at: Mapped[dt.datetime | None]  # when the chosen lists' last resync began
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
