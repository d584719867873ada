"""Purging an organization: every row kept of it, in every table, in the caller's transaction.

What to delete is read from the models' metadata, not listed by hand: every table with an
`org_id` column is purged, so a table added later is purged without anyone remembering to. A
table without one must be named below, as purged through another table's rows or as shared by
every organization; a test fails for a table that is neither.
"""

from __future__ import annotations

from sqlalchemy import Table, delete, inspect, select
from sqlalchemy.orm import Session

from app.lists import staging
from app.store.models import Base, ListSyncRun, Organization

# The organization's own row: deleted last, by id.
OWN_ROW = {"organizations": "the organization itself"}
# Tables whose rows belong to an organization through a row of a table with `org_id`:
# table -> (its column, that table, the column it names there).
THROUGH = {"list_run_pages": ("run_id", "list_sync_runs", "id")}
# Tables no organization owns: nothing of them is purged.
SHARED = {"rate_accounts": "a CRM account's pace, shared by every organization that uses it"}


def purge(session: Session, org_id: str) -> None:
    """Delete everything stored of the organization: its rows in every table, the pages and
    staging tables of its list resyncs (members' contacts), and its own row."""
    _drop_staging(session, org_id)
    tables = Base.metadata.tables
    # Rows reached through another table go first, while the rows that name them still exist.
    for name, (column, parent_name, parent_column) in THROUGH.items():
        table, parent = tables[name], tables[parent_name]
        owned = select(parent.c[parent_column]).where(parent.c.org_id == org_id)
        session.execute(delete(table).where(table.c[column].in_(owned)))
    for table in per_org_tables():
        session.execute(delete(table).where(table.c.org_id == org_id))
    session.execute(delete(Organization).where(Organization.id == org_id))


def per_org_tables() -> list[Table]:
    """Every table with an `org_id` column, a table that depends on another before it."""
    return [t for t in reversed(Base.metadata.sorted_tables) if "org_id" in t.columns]


def _drop_staging(session: Session, org_id: str) -> None:
    """Drop the staging tables of the organization's list resyncs (a running one has one).
    The sweep would drop them once their run is gone, but they hold customers' contacts."""
    runs = set(session.scalars(select(ListSyncRun.id).where(ListSyncRun.org_id == org_id)))
    for name in inspect(session.connection()).get_table_names():
        if staging.is_staging_table(name):
            run_id = int(name[len(staging.PREFIX) :])
            if run_id in runs:
                staging.drop(session, run_id)
