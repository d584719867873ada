"""Delivery's state: the outbox, each destination's limits, and dead letters."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.store.models.base import Base, BigId


class OutboxEntry(Base):
    """One entity (a contact, a payment) whose newest state the CRM has not acknowledged yet.

    `seq` grows with every change; a batch remembers the `seq` it claimed, so an answer for an
    older state never clears a newer change.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # In the claim's order, ties included: a claim reads only as far as its batch.
        Index(
            "ix_outbox_claimable",
            "org_id",
            "changed_at",
            "kind",
            "key",
            postgresql_where=text("pending"),
            sqlite_where=text("pending"),
        ),
        # Customer first: an index led by org_id alone would compete with the two partial ones
        # below for a claim's scans, and a planner with stale statistics may pick it.
        Index("ix_outbox_customer_id_org_id", "customer_id", "org_id"),
        # Only the batches in flight: settling one, and keeping a customer's changes out of
        # a second batch, must not scan every entity the organization ever had.
        Index(
            "ix_outbox_leased",
            "org_id",
            "lease_batch",
            postgresql_where=text("lease_batch IS NOT NULL"),
            sqlite_where=text("lease_batch IS NOT NULL"),
        ),
    )

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # contact | payment
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    pending: Mapped[bool] = mapped_column(Boolean)
    seq: Mapped[int] = mapped_column(BigInteger)
    lease_seq: Mapped[int | None] = mapped_column(BigInteger)
    lease_batch: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime]
    changed_at: Mapped[dt.datetime]  # oldest undelivered change: the delivery lag
    source_at: Mapped[dt.datetime | None]  # LOKE's own timestamp of the newest change
    request_id: Mapped[str | None] = mapped_column(String(64))  # the webhook of that change
    last_error: Mapped[str | None] = mapped_column(Text)


class DeliveryState(Base):
    """Per organization's destination: paused while its CRM is unreachable, and how it went.

    Its row lock serializes the organization's claims, whichever worker makes them.
    """

    __tablename__ = "delivery_state"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused_until: Mapped[dt.datetime | None]  # the next try while the CRM is unreachable
    unreachable_since: Mapped[dt.datetime | None]  # the first failure of the current outage
    # Why it is paused: "unreachable", or "credentials" when the CRM refuses them (401/403).
    pause_reason: Mapped[str | None] = mapped_column(String(16))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[dt.datetime | None]


class RateAccount(Base):
    """A CRM account's allowance, shared by every organization and worker that spends it: the
    time its next request may go (GCRA), and a pause after it was throttled (429)."""

    __tablename__ = "rate_accounts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tat: Mapped[dt.datetime]  # theoretical arrival time of the next allowed request
    throttled_until: Mapped[dt.datetime | None]
    throttle_reason: Mapped[str | None] = mapped_column(Text)  # the CRM's words, or our budget's
    # Requests spent in the CRM's current day (see app/delivery/daily_budget.py).
    day_start: Mapped[dt.datetime | None]
    day_requests: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime]


class DeadLetter(Base):
    """Something a person must look at: an event we could not apply, or a batch the CRM refused."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_org_id_created_at", "org_id", "created_at"),
        # Retention keeps an event while a dead letter points at it.
        Index(
            "ix_dead_letters_inbox_id",
            "inbox_id",
            postgresql_where=text("inbox_id IS NOT NULL"),
            sqlite_where=text("inbox_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # event | batch | operation
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]]
    inbox_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime]
    replayed_at: Mapped[dt.datetime | None]
    replay_count: Mapped[int] = mapped_column(Integer, default=0)
