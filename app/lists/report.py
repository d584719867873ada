"""How list resyncs went: every LOKE list of an organization, and each synced list's last run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.services import Services
from app.lists.loke_lists import KnownLists
from app.lists.names import remember_names
from app.loke.errors import LokeError
from app.store.db import utcnow
from app.store.models import CustomerList, ListMember, ListSyncRun, Organization


@dataclass(frozen=True)
class ListsOverview:
    """Every LOKE list of an organization as last read, with whether it is synced and how it
    went; when LOKE could not be read just now, why, and when the lists shown were read."""

    lists: list[dict[str, Any]]
    read_at: dt.datetime | None
    loke_error: str | None


def overview(services: Services, known: KnownLists, org_id: str) -> ListsOverview:
    """The lists LOKE gave (see `loke_lists`), with what is stored of each. Raises LokeError
    when LOKE could not be read and no earlier read is known."""
    if known.lists is None:
        raise LokeError(known.error or "LOKE's lists have not been read")
    with services.db.transaction() as session:
        if known.fresh:
            remember_names(session, org_id, known.lists)
        org = session.get(Organization, org_id)
        chosen = set(org.lists) if org else set()
        summaries = {s["id"]: s for s in summaries_of(session, org_id)}
    lists = [
        {
            "id": item.get("id"),
            "name": item.get("name"),
            "memberCount": item.get("memberCount"),
            "synced": item.get("id") in chosen,
            **{k: v for k, v in summaries.get(item.get("id"), {}).items() if k != "id"},
        }
        for item in known.lists
    ]
    return ListsOverview(lists, known.read_at, known.error)


def summaries_of(session: Session, org_id: str) -> list[dict[str, Any]]:
    """Per list we know: members stored and the last run (status, duration, adds, removes)."""
    stored = {
        row.list_id: row.count
        for row in session.execute(
            select(ListMember.list_id, func.count().label("count"))
            .where(ListMember.org_id == org_id)
            .group_by(ListMember.list_id)
        )
    }
    rows = session.execute(
        select(CustomerList, ListSyncRun)
        .outerjoin(ListSyncRun, ListSyncRun.id == CustomerList.last_run_id)
        .where(CustomerList.org_id == org_id, CustomerList.last_run_id.is_not(None))
    )
    return [
        {"id": listed.id, "name": listed.name, "membersStored": stored.get(listed.id, 0),
         "lastRun": run_summary(run)}
        for listed, run in rows
    ]  # fmt: skip


def run_summary(run: ListSyncRun | None) -> dict[str, Any] | None:
    """A list resync run as the status shows it."""
    if run is None:
        return None
    end = run.finished_at or utcnow()
    return {
        "id": run.id,
        "status": run.status,
        "startedAt": run.started_at.isoformat(),
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "durationSeconds": round((end - run.started_at).total_seconds(), 3),
        "pages": run.pages,
        "members": run.members,
        "adds": run.adds,
        "removes": run.removes,
        "error": run.last_error,
    }
