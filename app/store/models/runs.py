"""Paged runs over LOKE (backfills, list resyncs) and their checkpoints."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.store.models.base import Base, BigId


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
    # Customers first, then (when the organization wants its payment history) payments, newest
    # change first, back to `payments_from` (None: all of them).
    phase: Mapped[str] = mapped_column(String(16), default="customers")  # customers | payments
    with_payments: Mapped[bool] = mapped_column(Boolean, default=False)
    payments_from: Mapped[dt.datetime | None]
    payments: Mapped[int] = mapped_column(Integer, default=0)


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
