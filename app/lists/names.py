"""The lists we know by name: a row per LOKE list synced (or once synced), whose name list.add
carries, and whose last resync the report shows."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.core.validation import is_list_id
from app.store.models import CustomerList


def list_row(session: Session, org_id: str, list_id: str) -> CustomerList:
    """The list's row, added to the session if it is new."""
    row = session.get(CustomerList, (org_id, list_id))
    if row is None:
        row = CustomerList(org_id=org_id, id=list_id)
        session.add(row)
    return row


def remember_names(session: Session, org_id: str, lists: list[dict[str, Any]]) -> None:
    """Keep LOKE's list names, which list.add carries. A list whose id no organization's
    choice can hold (see `orgs.connect`) is not kept; a name is kept without NUL characters,
    which the store cannot hold (it is only a label)."""
    for item in lists:
        list_id = item.get("id")
        if is_list_id(list_id):
            name = str(item.get("name") or "").replace("\x00", "")[:255]
            list_row(session, org_id, list_id).name = name
