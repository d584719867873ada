"""The stored state: organizations, the webhook inbox, the mirror, the outbox, dead letters.

Ordering keys are integers (microseconds since the epoch, counters) so that "newer" compares the
same way on PostgreSQL and SQLite, inside one conditional UPDATE.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.db import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime,
        dict[str, Any]: Json,
        list[Any]: Json,
    }


class Organization(Base):
    """A LOKE organization this service is connected to, and where its data goes."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    connected: Mapped[bool] = mapped_column(Boolean, default=True)
    webhook_secret_enc: Mapped[str] = mapped_column(Text)
    destination: Mapped[dict[str, Any]]  # without its secret
    destination_secret_enc: Mapped[str | None] = mapped_column(Text)
    lists: Mapped[list[Any]] = mapped_column(default=list)
    list_sync_interval_seconds: Mapped[int | None] = mapped_column(Integer)
    subscription_status: Mapped[str] = mapped_column(String(16), default="pending")
    subscription_error: Mapped[str | None] = mapped_column(Text)
    subscription_checked_at: Mapped[dt.datetime | None]
    # Reconciliation: the sweep walks back to here (minus an overlap); set to each sweep's start.
    reconciled_until: Mapped[dt.datetime | None]
    reconciled_at: Mapped[dt.datetime | None]
    lists_synced_at: Mapped[dt.datetime | None]  # when the chosen lists' last resync began
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class PagedRun:
    """A walk over LOKE pages, one task per page; `next_url` is the checkpoint, written in the
    same transaction as the page it follows."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # running | finished | failed | ...
    next_url: Mapped[str | None] = mapped_column(Text)
    previous_url: Mapped[str | None] = mapped_column(Text)  # to refuse a paging loop
    pages: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed tries of the current page
    started_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class BackfillRun(PagedRun, Base):
    """One full read of an organization's customers, a page per task, resumable.

    `next_url` is the checkpoint: written in the same transaction as the page it follows, so a
    killed worker resumes at the first page not yet applied, never skipping or restarting.
    """

    __tablename__ = "backfill_runs"
    __table_args__ = (
        # One running backfill per organization, enforced by the database itself.
        Index(
            "uq_backfill_runs_running",
            "org_id",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )

    customers: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)  # records LOKE sent we could not read


class InboxEvent(Base):
    """A webhook exactly as LOKE sent it, stored before we answered 2xx."""

    __tablename__ = "inbox"
    __table_args__ = (
        Index("uq_inbox_org_id_body_sha256", "org_id", "body_sha256", unique=True),
        Index(
            "ix_inbox_pending",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(64))
    body_sha256: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending | applied | ignored | failed
    received_at: Mapped[dt.datetime]
    processed_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))


class Customer(Base):
    """The newest known state of one LOKE customer: profile and statistics ordered separately."""

    __tablename__ = "customers"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile: Mapped[dict[str, Any]]
    profile_version: Mapped[int] = mapped_column(BigInteger)  # updatedAt in µs (see mirror)
    statistics: Mapped[dict[str, Any] | None]
    stats_activity: Mapped[int] = mapped_column(BigInteger)  # newest last...At in µs
    stats_counter: Mapped[int] = mapped_column(BigInteger)  # points earned + redeemed
    stats_digest: Mapped[str] = mapped_column(String(64))  # tie-break, so order never matters
    first_seen_at: Mapped[dt.datetime]
    changed_at: Mapped[dt.datetime]


class Payment(Base):
    """The newest known state of one payment: completed, then possibly refunded, never back."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_org_id_customer_id", "org_id", "customer_id"),)

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    rank: Mapped[int] = mapped_column(Integer)  # completed 1, refunded 2
    version: Mapped[int] = mapped_column(BigInteger)  # completedAt / refundedAt in µs
    digest: Mapped[str] = mapped_column(String(64))
    record: Mapped[dict[str, Any]]  # the payment.upsert fields
    changed_at: Mapped[dt.datetime]


class OutboxEntry(Base):
    """One entity (a contact, a payment) whose newest state the CRM has not acknowledged yet.

    `seq` grows with every change; a batch remembers the `seq` it claimed, so an answer for an
    older state never clears a newer change.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_claimable",
            "org_id",
            "changed_at",
            postgresql_where=text("pending"),
            sqlite_where=text("pending"),
        ),
        Index("ix_outbox_org_id_customer_id", "org_id", "customer_id"),
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
    """Per destination: the shared rate limit (GCRA) and a pause after 429/5xx."""

    __tablename__ = "delivery_state"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tat: Mapped[dt.datetime]  # theoretical arrival time of the next allowed request
    paused_until: Mapped[dt.datetime | None]
    # One flush task per destination at a time: a burst of kicks must not park every worker
    # thread on this destination's lock and rate limit.
    flusher: Mapped[str | None] = mapped_column(String(32))
    flusher_until: Mapped[dt.datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[dt.datetime | None]


class DeadLetter(Base):
    """Something a person must look at: an event we could not apply, or a batch the CRM refused."""

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_org_id_created_at", "org_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # event | batch
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]]
    inbox_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime]
    replayed_at: Mapped[dt.datetime | None]
    replay_count: Mapped[int] = mapped_column(Integer, default=0)


class CustomerList(Base):
    """A LOKE list we sync (or synced): its name for list.add, and its last resync's summary."""

    __tablename__ = "customer_lists"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    last_run_id: Mapped[int | None] = mapped_column(BigInteger)


class ListMember(Base):
    """Stored membership: what the CRM has been told each list holds."""

    __tablename__ = "list_members"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    list_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class ListRunPage(Base):
    """One member page of a resync, as the run's reader read it: its URL, the next page's URL
    (None on the last page) and its body, kept until its own task has staged it.

    Pages are staged concurrently, each in its own transaction, while the reader reads on:
    these rows are the run's checkpoint. The run is complete when the last page and every page
    before it are staged.
    """

    __tablename__ = "list_run_pages"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    next_url: Mapped[str | None] = mapped_column(Text)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    members: Mapped[int | None] = mapped_column(Integer)  # None until staged


class ListSyncRun(PagedRun, Base):
    """One full re-read of one list, a page per task; its checkpoint is its ListRunPage rows
    (`next_url` keeps the first page's URL).

    The running row is the lock: at most one per list (a partial unique index), it outlives a
    killed worker, and the sweeper resumes it from its checkpoint instead of starting another.
    """

    __tablename__ = "list_sync_runs"
    __table_args__ = (
        Index(
            "uq_list_sync_runs_running",
            "org_id",
            "list_id",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )

    list_id: Mapped[str] = mapped_column(String(64))  # status also: gone (404) | cancelled
    members: Mapped[int] = mapped_column(Integer, default=0)
    adds: Mapped[int] = mapped_column(Integer, default=0)
    removes: Mapped[int] = mapped_column(Integer, default=0)
