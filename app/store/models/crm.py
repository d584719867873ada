"""What a CRM told us about its own records: the ids it gave our customers and lists, and the
customers it would not take as they are (conflicts). All of it can be learnt again from the
CRM, so losing a row costs a lookup, never data."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.store.models.base import Base


class CrmContact(Base):
    """The CRM's record id of one customer's contact (lists and orders name contacts by it)."""

    __tablename__ = "crm_contacts"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[dt.datetime]


class CrmList(Base):
    """The CRM's list for one of the organization's LOKE lists, and the name it was given."""

    __tablename__ = "crm_lists"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    list_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    crm_list_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(400))
    updated_at: Mapped[dt.datetime]


class DeliveryConflict(Base):
    """A customer the CRM holds without part of its data, and why: its email belongs to
    another contact, or the CRM calls it invalid. Shown on the organization until a later
    delivery of the customer writes it whole."""

    __tablename__ = "delivery_conflicts"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(400))
    reason: Mapped[str] = mapped_column(Text)
    existing_record_id: Mapped[str | None] = mapped_column(String(32))
    detected_at: Mapped[dt.datetime]
