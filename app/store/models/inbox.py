"""The webhook inbox: every accepted body, as LOKE sent it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.store.models.base import Base, BigId

DONE = "status IN ('applied', 'ignored')"  # events whose body only retention still reads


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
        # Retention's scans: events done with, and those whose body is still kept.
        Index(
            "ix_inbox_done_received_at",
            "received_at",
            postgresql_where=text(DONE),
            sqlite_where=text(DONE),
        ),
        Index(
            "ix_inbox_body_kept_received_at",
            "received_at",
            postgresql_where=text(f"{DONE} AND body <> ''"),
            sqlite_where=text(f"{DONE} AND body <> ''"),
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
