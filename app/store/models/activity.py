"""What the dashboard's charts are drawn from: per organization and minute, what happened."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.store.models.base import Base


class ActivityMinute(Base):
    """One organization's minute: webhooks taken in and operations delivered (counted once per
    applied batch and per settled batch, never per webhook), and the delivery backlog and lag
    as sampled once a minute. Pruned by retention after a couple of days."""

    __tablename__ = "activity_minutes"
    __table_args__ = (
        # The charts and the feed of every organization at once, and retention's cutoff.
        Index("ix_activity_minutes_minute", "minute"),
    )

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[dt.datetime] = mapped_column(primary_key=True)  # its start, in UTC
    webhooks: Mapped[int] = mapped_column(Integer, default=0)  # by the minute they arrived
    delivered: Mapped[int] = mapped_column(Integer, default=0)  # operations the CRM took
    batches: Mapped[int] = mapped_column(Integer, default=0)  # batches the CRM answered
    refused: Mapped[int] = mapped_column(Integer, default=0)  # operations made dead letters
    retried: Mapped[int] = mapped_column(Integer, default=0)  # operations the CRM asked again
    paused: Mapped[int] = mapped_column(Integer, default=0)  # batches the CRM did not take
    backlog: Mapped[int | None] = mapped_column(Integer)  # sampled: entities pending
    lag_seconds: Mapped[float | None] = mapped_column(Float)  # sampled: see app.activity.lag
