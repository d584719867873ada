"""What the destination remembers of the portal between batches, in the service's store: the
record id of each customer's contact, the list made for each LOKE list, and the conflicts
shown on the organization. Each call is a short transaction of its own (never one held while
HubSpot answers); all of it can be learnt again from HubSpot, so nothing here can lose data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.store import dialect_sql
from app.store.db import Database, utcnow
from app.store.models import CrmContact, CrmList, CustomerList, DeliveryConflict


@dataclass(frozen=True)
class Conflict:
    """A customer written without its email, and why."""

    customer_id: str
    email: str | None
    reason: str
    existing_record_id: str | None = None


class PortalMemory:
    """One organization's memory of its portal."""

    def __init__(self, db: Database, org_id: str) -> None:
        self._db = db
        self._org = org_id

    def contact_ids(self, customer_ids: Iterable[str]) -> dict[str, str]:
        """The remembered record ids of these customers' contacts."""
        wanted = sorted(set(customer_ids))
        if not wanted:
            return {}
        with self._db.transaction() as session:
            rows = session.execute(
                select(CrmContact.customer_id, CrmContact.record_id).where(
                    CrmContact.org_id == self._org,
                    dialect_sql.is_any_of(session, CrmContact.customer_id, wanted),
                )
            )
            return {row.customer_id: row.record_id for row in rows}

    def contacts_written(
        self, record_ids: Mapping[str, str], conflicts: Iterable[Conflict], whole: Iterable[str]
    ) -> None:
        """After a contacts upsert, in one transaction: their record ids, and their conflicts
        shown (`conflicts`) or cleared (those written `whole`, with their email)."""
        with self._db.transaction() as session:
            self._remember(session, record_ids)
            self._settle(session, conflicts, whole)

    def remember_contacts(self, record_ids: Mapping[str, str]) -> None:
        """Customers' contacts as HubSpot last named them (a merge gives a contact a new id)."""
        with self._db.transaction() as session:
            self._remember(session, record_ids)

    def _remember(self, session: Session, record_ids: Mapping[str, str]) -> None:
        if not record_ids:
            return
        now = utcnow()
        rows = [
            {"org_id": self._org, "customer_id": customer, "record_id": record, "updated_at": now}
            for customer, record in sorted(record_ids.items())
        ]
        insert = dialect_sql.insert(session, CrmContact)
        session.execute(
            insert.on_conflict_do_update(
                index_elements=["org_id", "customer_id"],
                set_={
                    "record_id": insert.excluded.record_id,
                    "updated_at": insert.excluded.updated_at,
                },
                where=CrmContact.record_id != insert.excluded.record_id,
            ),
            rows,
        )

    def forget_contacts(self, customer_ids: Iterable[str]) -> None:
        """Record ids HubSpot no longer knows (a merged or deleted contact)."""
        with self._db.transaction() as session:
            session.execute(
                delete(CrmContact).where(
                    CrmContact.org_id == self._org,
                    CrmContact.customer_id.in_(sorted(set(customer_ids))),
                )
            )

    def lists(self, list_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """For each LOKE list: the HubSpot list made for it and the name it was given."""
        with self._db.transaction() as session:
            rows = session.execute(
                select(CrmList.list_id, CrmList.crm_list_id, CrmList.name).where(
                    CrmList.org_id == self._org, CrmList.list_id.in_(sorted(set(list_ids)))
                )
            )
            return {row.list_id: (row.crm_list_id, row.name) for row in rows}

    def list_names(self, list_ids: Iterable[str]) -> dict[str, str]:
        """LOKE's current names of these lists."""
        with self._db.transaction() as session:
            rows = session.execute(
                select(CustomerList.id, CustomerList.name).where(
                    CustomerList.org_id == self._org, CustomerList.id.in_(sorted(set(list_ids)))
                )
            )
            return {row.id: row.name for row in rows if row.name}

    def remember_list(self, list_id: str, crm_list_id: str, name: str) -> None:
        """The HubSpot list of a LOKE list, under the name it has now."""
        with self._db.transaction() as session:
            row = session.get(CrmList, (self._org, list_id), with_for_update=True)
            if row is None:
                session.add(CrmList(org_id=self._org, list_id=list_id, crm_list_id=crm_list_id,
                                    name=name, updated_at=utcnow()))  # fmt: skip
            else:
                row.crm_list_id, row.name, row.updated_at = crm_list_id, name, utcnow()

    def forget_list(self, list_id: str) -> None:
        """A HubSpot list that is gone (deleted in the portal): made again on the next send."""
        with self._db.transaction() as session:
            session.execute(
                delete(CrmList).where(CrmList.org_id == self._org, CrmList.list_id == list_id)
            )

    def _settle(self, session: Session, found: Iterable[Conflict], whole: Iterable[str]) -> None:
        found = sorted(found, key=lambda c: c.customer_id)
        clear = sorted(set(whole) | {c.customer_id for c in found})
        if not clear:
            return
        now = utcnow()
        session.execute(
            delete(DeliveryConflict).where(
                DeliveryConflict.org_id == self._org,
                dialect_sql.is_any_of(session, DeliveryConflict.customer_id, clear),
            )
        )
        session.add_all(
            DeliveryConflict(org_id=self._org, customer_id=c.customer_id,
                             email=(c.email or "")[:400] or None, reason=c.reason[:2000],
                             existing_record_id=c.existing_record_id, detected_at=now)
            for c in found
        )  # fmt: skip
