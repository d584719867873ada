"""The end of a list resync: the staged members against the stored membership, in SQL.

One transaction, whatever the list's size: contacts for new members the mirror does not know
(built from their member records), then `list.add` and `list.remove` marked in the outbox and the
stored membership swapped. Nothing is held in Python but a thousand unknown members at a time.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Select, and_, delete, exists, literal, select, text
from sqlalchemy.orm import Session

from app import dialect_sql, mirror
from app.delivery import outbox
from app.events import CustomerTiny
from app.models import Customer, ListMember, ListStaging, ListSyncRun

log = logging.getLogger(__name__)

CONTACTS_AT_A_TIME = 1000


def apply_difference(session: Session, run: ListSyncRun) -> None:
    """Swap the membership and mark adds and removes (and contacts first, for new members
    unknown to the mirror, so that the CRM sees each before its list.add)."""
    org_id, list_id = run.org_id, run.list_id
    postgres = dialect_sql.name(session) == "postgresql"
    if postgres:
        # The staging table goes from empty to a whole list within minutes, faster than
        # autovacuum notices: without fresh statistics the planner compares every staged
        # member with every stored one (seconds become hours at 200k). The membership too:
        # the run that last grew it may have ended a moment ago.
        session.execute(text("ANALYZE list_staging, list_members"))
    stored = and_(ListMember.org_id == org_id, ListMember.list_id == list_id)
    is_stored = exists().where(stored, ListMember.customer_id == ListStaging.customer_id)
    is_staged = exists().where(
        ListStaging.run_id == run.id, ListStaging.customer_id == ListMember.customer_id
    )
    _contacts_for_unknown(session, run, is_stored)
    # NOT EXISTS, not NOT IN: an anti-join, where NOT IN over a list larger than work_mem is
    # a nested loop of every stored member against every staged one.
    remove = delete(ListMember).where(stored, ~is_staged)
    add = (
        dialect_sql.insert(session, ListMember.__table__)
        .from_select(
            ["org_id", "list_id", "customer_id"],
            select(literal(org_id), literal(list_id), ListStaging.customer_id)
            .where(ListStaging.run_id == run.id, ~is_stored)
            # The sort reads every new member before the first insert: otherwise a first
            # sync (planned against an empty membership) rescans the rows it is inserting.
            .order_by(ListStaging.customer_id),
        )
        # A member LOKE listed on two pages is staged twice: inserted once.
        .on_conflict_do_nothing()
    )
    if postgres:
        # One statement, one anti-join, each way: the members that changed come back from
        # the DELETE and the INSERT and go straight into the outbox.
        removed = remove.returning(ListMember.customer_id).cte("removed")
        added = add.returning(ListMember.customer_id).cte("added")
        run.removes = outbox.mark_selected(session, org_id, "list", _keyed(list_id, removed.c))
        run.adds = outbox.mark_selected(session, org_id, "list", _keyed(list_id, added.c))
    else:  # SQLite has no DELETE or INSERT inside WITH: find the changes, then make them
        new = (
            select(ListStaging.customer_id)
            .where(ListStaging.run_id == run.id, ~is_stored)
            .distinct()
        )
        gone = select(ListMember.customer_id).where(stored, ~is_staged)
        run.adds = outbox.mark_selected(session, org_id, "list", _keyed(list_id, new.subquery().c))
        run.removes = outbox.mark_selected(
            session, org_id, "list", _keyed(list_id, gone.subquery().c)
        )
        session.execute(remove)
        session.execute(add)
    log.info("list %s of %s: %d added, %d removed", list_id, org_id, run.adds, run.removes)


def _contacts_for_unknown(session: Session, run: ListSyncRun, is_stored: Any) -> None:
    """A new member the mirror does not know yet gets a contact from its member record (kept
    until the real customer arrives), marked before the list.adds are."""
    in_mirror = exists().where(
        Customer.org_id == run.org_id, Customer.id == ListStaging.customer_id
    )
    unknown = select(
        ListStaging.customer_id,
        ListStaging.email,
        ListStaging.first_name,
        ListStaging.last_name,
        ListStaging.phone_number,
    ).where(ListStaging.run_id == run.id, ~is_stored, ~in_mirror)
    found = session.execute(unknown, execution_options={"yield_per": CONTACTS_AT_A_TIME})
    for rows in found.partitions():
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
        mirror.apply_customers(session, run.org_id, map(mirror.change_from_tiny, members))


def _keyed(list_id: str, members: Any) -> Select[str, str]:
    """The outbox rows (key, customer_id) of these members of the list."""
    key = literal(f"{list_id}:") + members.customer_id
    return select(key.label("key"), members.customer_id.label("customer_id"))
