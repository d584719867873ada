"""The end of a list resync: the staged members against the stored membership, in SQL.

One transaction, whatever the list's size. One pass (a full join of the run's staged members
with the list's stored ones) keeps only what changed, in a temporary table; everything after
works on those few rows: contacts for new members the mirror does not know (built from their
member records), `list.add` and `list.remove` marked in the outbox, the stored membership
swapped. Nothing is held in Python but a thousand unknown members at a time.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    MetaData,
    Select,
    String,
    Table,
    Text,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session

from app.delivery import outbox
from app.lists import staging
from app.loke.records import CustomerTiny
from app.mirror import customers
from app.store import dialect_sql
from app.store.models import Customer, ListMember, ListSyncRun

log = logging.getLogger(__name__)

CONTACTS_AT_A_TIME = 1000

# The members that changed, for the length of one diff's transaction.
_CHANGES = Table(
    "list_changes",
    MetaData(),
    Column("customer_id", String(64), nullable=False),
    Column("added", Boolean, nullable=False),  # else removed
    Column("email", Text),
    Column("first_name", Text),
    Column("last_name", Text),
    Column("phone_number", Text),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def apply_difference(session: Session, run: ListSyncRun) -> None:
    """Swap the membership and mark adds and removes (and contacts first, for new members
    unknown to the mirror, so that the CRM sees each before its list.add)."""
    org_id, list_id = run.org_id, run.list_id
    _find_changes(session, run)
    _contacts_for_unknown(session, org_id)
    added = select(_CHANGES.c.customer_id).where(_CHANGES.c.added).distinct()
    removed = select(_CHANGES.c.customer_id).where(~_CHANGES.c.added)
    run.adds = outbox.mark_selected(session, org_id, "list", _keyed(list_id, added))
    run.removes = outbox.mark_selected(session, org_id, "list", _keyed(list_id, removed))
    session.execute(
        delete(ListMember)
        .where(
            ListMember.org_id == org_id,
            ListMember.list_id == list_id,
            dialect_sql.is_any_selected(session, ListMember.customer_id, removed),
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        dialect_sql.insert(session, ListMember.__table__)
        .from_select(
            ["org_id", "list_id", "customer_id"],
            # (SQLite needs a WHERE to tell INSERT ... SELECT from ON CONFLICT.)
            select(literal(org_id), literal(list_id), added.subquery().c.customer_id).where(true()),
        )
        .on_conflict_do_nothing()
    )
    _CHANGES.drop(session.connection())
    log.info("list %s of %s: %d added, %d removed", list_id, org_id, run.adds, run.removes)


def _find_changes(session: Session, run: ListSyncRun) -> None:
    """Fill the temporary table with the members staged and not stored (added: with their
    records) and stored and not staged (removed). A full join is a hash or merge join, never
    a nested loop: no statistics of the staging table are needed to plan it."""
    staged = select(staging.staging_table(run.id)).subquery("staged")
    stored = (
        select(ListMember.customer_id)
        .where(ListMember.org_id == run.org_id, ListMember.list_id == run.list_id)
        .subquery("stored")
    )
    joined = staged.join(stored, staged.c.customer_id == stored.c.customer_id, full=True)
    changes = (
        select(
            func.coalesce(staged.c.customer_id, stored.c.customer_id),
            stored.c.customer_id.is_(None),
            staged.c.email,
            staged.c.first_name,
            staged.c.last_name,
            staged.c.phone_number,
        )
        .select_from(joined)
        .where(or_(staged.c.customer_id.is_(None), stored.c.customer_id.is_(None)))
    )
    connection = session.connection()
    on_postgresql = dialect_sql.name(session) == "postgresql"
    if on_postgresql:
        # The join hashes one side whole, which for a large list is past the default work_mem:
        # it would spill to disk in batches. For this transaction only.
        session.execute(text("SET LOCAL work_mem = '64MB'"))  # room for ~1M members
    _CHANGES.create(connection)
    session.execute(_CHANGES.insert().from_select([c.name for c in _CHANGES.c], changes))
    if on_postgresql:
        # Autovacuum never sees a temporary table: without statistics the planner would not
        # know whether to probe the mirror for each new member or scan the organization.
        session.execute(text("ANALYZE list_changes"))


def _contacts_for_unknown(session: Session, org_id: str) -> None:
    """A new member the mirror does not know yet gets a contact from its member record (kept
    until the real customer arrives), marked before the list.adds are."""
    in_mirror = exists().where(Customer.org_id == org_id, Customer.id == _CHANGES.c.customer_id)
    unknown = select(
        _CHANGES.c.customer_id,
        _CHANGES.c.email,
        _CHANGES.c.first_name,
        _CHANGES.c.last_name,
        _CHANGES.c.phone_number,
    ).where(_CHANGES.c.added, ~in_mirror)
    unknown_rows = session.execute(unknown, execution_options={"yield_per": CONTACTS_AT_A_TIME})
    for rows in unknown_rows.partitions():
        members = [
            CustomerTiny(
                id=row.customer_id,
                email=row.email,
                first_name=row.first_name,
                last_name=row.last_name,
                phone_number=row.phone_number,
            )
            for row in rows
        ]
        customers.apply_customers(session, org_id, map(customers.change_from_tiny, members))


def _keyed(list_id: str, members: Select[Any]) -> Select[str, str]:
    """The outbox rows (key, customer_id) of these members of the list."""
    member = members.subquery()
    key = literal(f"{list_id}:") + member.c.customer_id
    return select(key.label("key"), member.c.customer_id.label("customer_id"))
