"""The dead letters that name one customer: batches and operations the CRM refused that carried
it (by their outbox keys or operations), and events about it that could not be applied.

Dead letters keep what named the customer inside JSON (a batch's keys and operations) or in the
stored event's body, which no index covers. They are few (a person replays them; retention
prunes the replayed ones), so the organization's newest ones are read, narrowed in SQL by the
id's text where that text is the same in every store's JSON, and matched exactly here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, select
from sqlalchemy.orm import QueryableAttribute, Session

from app.store.models import DeadLetter, InboxEvent

SCANNED = 1000  # the newest dead letters of the organization looked at
SHOWN = 20


def naming_customer(
    session: Session, org_id: str, customer_id: str, limit: int = SHOWN
) -> list[DeadLetter]:
    """The newest `limit` dead letters of `org_id` that name `customer_id`, newest first."""
    delivered = select(DeadLetter).where(DeadLetter.org_id == org_id, DeadLetter.kind != "event")
    events = (
        select(DeadLetter, InboxEvent.body)
        .join(InboxEvent, InboxEvent.id == DeadLetter.inbox_id)
        .where(DeadLetter.org_id == org_id, DeadLetter.kind == "event")
    )
    if _same_text_in_every_json(customer_id):
        delivered = delivered.where(_mentions(cast(DeadLetter.detail, Text), customer_id))
        events = events.where(_mentions(InboxEvent.body, customer_id))
    found = [
        letter
        for letter in session.scalars(delivered.order_by(DeadLetter.id.desc()).limit(SCANNED))
        if customer_id in _customers_of_batch(letter.detail)
    ]
    found += [
        row.DeadLetter
        for row in session.execute(events.order_by(DeadLetter.id.desc()).limit(SCANNED))
        if customer_id in _customers_of_event(row.body)
    ]
    return sorted(found, key=lambda letter: letter.id, reverse=True)[:limit]


def _same_text_in_every_json(text: str) -> bool:
    # PostgreSQL writes JSON text with non-ASCII as it is, SQLAlchemy's JSON for SQLite as
    # \u escapes, and both escape quotes and backslashes: only plain ASCII reads the same.
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _mentions(
    text: ColumnElement[str] | QueryableAttribute[str], customer_id: str
) -> ColumnElement[bool]:
    return text.contains(f'"{customer_id}"', autoescape=True)


def _customers_of_batch(detail: dict[str, Any]) -> set[str]:
    """The customers a refused batch or operation carried: its contacts and list members by
    their outbox keys, its payments by their operations."""
    found: set[str] = set()
    for kind, key in _pairs(detail.get("keys")):
        if kind == "contact":
            found.add(key)
        elif kind == "list":
            found.add(key.partition(":")[2])
    for operation in detail.get("operations") or []:
        if isinstance(operation, dict) and isinstance(operation.get("customerId"), str):
            found.add(operation["customerId"])
    return found


def _pairs(keys: object) -> Iterable[tuple[str, str]]:
    if not isinstance(keys, list):
        return []
    return [(str(k[0]), str(k[1])) for k in keys if isinstance(k, list) and len(k) == 2]


def _customers_of_event(body: str) -> set[str]:
    """The customer a stored webhook is about (a customer event's, or a payment's customer)."""
    try:
        event = json.loads(body)
    except ValueError:
        return set()
    if not isinstance(event, dict):
        return set()
    found: set[str] = set()
    for holder in (event, event.get("payment")):
        customer = holder.get("customer") if isinstance(holder, dict) else None
        if isinstance(customer, dict) and isinstance(customer.get("id"), str):
            found.add(customer["id"])
    return found
