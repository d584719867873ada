"""The mirror: the newest known state of LOKE's customers, payments and list members."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.store.models.base import Base

# Indexes on an expression spelt per dialect, made by a migration (0016) and not declared on a
# model: autogenerate can neither render nor compare them, and must not offer to drop them.
EXPRESSION_INDEXES = frozenset({"ix_customers_email"})  # lower(profile email): the search


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
