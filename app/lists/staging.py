"""Where a list resync stages its members: a table of the run's own, created with the run and
dropped when the run is over.

A table of the run's own needs no index (the diff reads it whole, and no other run's rows are
in it), so a page's COPY maintains none, and the end of the run is one DROP, leaving no dead
rows for autovacuum.
"""

from __future__ import annotations

import re
from functools import lru_cache

from sqlalchemy import Column, MetaData, String, Table, Text, inspect, select
from sqlalchemy.orm import Session

from app.store.models import ListSyncRun

PREFIX = "list_staging_"
_NAME = re.compile(rf"{PREFIX}(\d+)")
COLUMNS = ("customer_id", "email", "first_name", "last_name", "phone_number")


def is_staging_table(name: str | None) -> bool:
    """Whether a table is a run's staging (not described by the models: alembic leaves it)."""
    return name is not None and _NAME.fullmatch(name) is not None


@lru_cache(maxsize=256)
def staging_table(run_id: int) -> Table:
    """The run's staging table. A member LOKE lists on two pages is staged twice, which the
    diff does not mind: appending needs no key to check."""
    return Table(
        f"{PREFIX}{run_id}",
        MetaData(),
        Column("customer_id", String(64), nullable=False),
        Column("email", Text),  # the member record: a contact for members the mirror lacks
        Column("first_name", Text),
        Column("last_name", Text),
        Column("phone_number", Text),
    )


def create(session: Session, run_id: int) -> None:
    """In the transaction that creates the run: the run and its table exist together."""
    staging_table(run_id).create(session.connection())


def drop(session: Session, run_id: int) -> None:
    """Drop the run's staging table, if it is still there."""
    staging_table(run_id).drop(session.connection(), checkfirst=True)


# Each DROP holds its locks until the commit: a backlog of thousands of tables dropped in one
# transaction (after the sweeper was down for a day) would run out of the server's lock table.
DROPS_PER_TRANSACTION = 50


def drop_stale(session: Session) -> int:
    """Drop the staging of up to DROPS_PER_TRANSACTION runs that are no longer running; how
    many tables were dropped."""
    # Tables first, runs second: a run started in between (its table and its row commit
    # together) is not among the tables seen, so its fresh table is never taken for stale.
    staged = [
        int(m.group(1))
        for m in map(_NAME.fullmatch, inspect(session.connection()).get_table_names())
        if m
    ]
    running = set(
        session.scalars(
            select(ListSyncRun.id).where(
                ListSyncRun.id.in_(staged), ListSyncRun.status == "running"
            )
        )
    )
    stale = [run_id for run_id in staged if run_id not in running][:DROPS_PER_TRANSACTION]
    for run_id in stale:
        drop(session, run_id)
    return len(stale)
