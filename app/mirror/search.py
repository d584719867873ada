"""Finding stored customers for a person: by LOKE id, or by email (exact in any case, or a prefix),
across organizations or within one.

An id is looked up through the primary key (organization, id), one probe per organization. An
email lives inside the stored profile (JSON): `email_key` is spelt as a fixed expression per
database (no bound parameter in it), exactly the expression of the index migration 0016 makes,
`lower(profile ->> 'email') text_pattern_ops` on PostgreSQL (exact and prefix) and
`lower(json_extract(profile, '$.email'))` on SQLite (exact; a prefix there reads every customer
of the organizations searched).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, func, literal, literal_column, or_, select
from sqlalchemy.orm import Session

from app.core.validation import ID_CHARS
from app.store import dialect_sql
from app.store.models import Customer, Organization

MAX_RESULTS = 50
MAX_EMAIL_CHARS = 320  # longer than any address a mail system takes
MIN_PREFIX_CHARS = 2  # a one-letter prefix would list a sizeable part of every organization
LIKE_ESCAPE = "/"


@dataclass(frozen=True)
class Found:
    """One stored customer a search matched."""

    org_id: str
    customer_id: str
    email: str | None
    name: str


def email_key(session: Session) -> ColumnElement[Any]:
    """lower(<the profile's email>), written the same way an expression index would be."""
    email: ColumnElement[str]
    if dialect_sql.name(session) == "postgresql":
        email = Customer.profile.op("->>", return_type=String())(literal_column("'email'"))
    else:
        email = func.json_extract(Customer.profile, literal_column("'$.email'"), type_=String())
    return func.lower(email, type_=String())


def find(
    session: Session, query: str, org_id: str | None = None, prefix: bool = False
) -> list[Found]:
    """Customers whose id is `query`, or whose email is `query` in any case (with `prefix`:
    whose email starts with it, any case), of `org_id` or of every organization; at most
    MAX_RESULTS, by organization then id."""
    query = query.strip()
    if not query or "\x00" in query:  # PostgreSQL refuses a NUL: nothing stored can match it
        return []
    orgs = [org_id] if org_id is not None else _org_ids(session)
    if not orgs or any(len(o) > ID_CHARS or "\x00" in o for o in orgs):
        return []
    conditions: list[ColumnElement[bool]] = []
    if len(query) <= ID_CHARS:
        conditions.append(Customer.id == query)
    email_wanted = _email_condition(session, query, prefix)
    if email_wanted is not None:
        conditions.append(email_wanted)
    if not conditions:
        return []
    rows = session.execute(
        select(Customer.org_id, Customer.id, Customer.profile)
        .where(dialect_sql.is_any_of(session, Customer.org_id, orgs), or_(*conditions))
        .order_by(Customer.org_id, Customer.id)
        .limit(MAX_RESULTS)
    )
    return [_found(row.org_id, row.id, row.profile) for row in rows]


def _email_condition(session: Session, query: str, prefix: bool) -> ColumnElement[bool] | None:
    if len(query) > MAX_EMAIL_CHARS:
        return None
    if prefix:
        if len(query) < MIN_PREFIX_CHARS:
            return None
        # Lowered in SQL on both sides: SQLite's lower() folds ASCII only, Python's every
        # script, and the two must agree or "É" would never find "é".
        pattern = func.lower(literal(_like_escaped(query), String()), type_=String()) + "%"
        return email_key(session).like(pattern, escape=LIKE_ESCAPE)
    if "@" not in query:  # no address without one: the id lookup alone, no scan of emails
        return None
    return email_key(session) == func.lower(literal(query, String()), type_=String())


def _like_escaped(text: str) -> str:
    """`text` matched literally by LIKE: its wildcards and the escape character escaped."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return text


def _org_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Organization.id).order_by(Organization.id)))


def _found(org_id: str, customer_id: str, profile: dict[str, Any] | None) -> Found:
    profile = profile or {}
    email = profile.get("email")
    parts = [profile.get("firstName"), profile.get("lastName")]
    name = " ".join(str(part) for part in parts if part)
    return Found(org_id, customer_id, email if isinstance(email, str) else None, name)
