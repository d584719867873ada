"""Customer lists: opt-in membership, resynced by a full re-read and a diff computed in SQL.

LOKE has no list webhooks and no way to see what changed, so each resync reads every member
page (one reader following X-Next-Page, `list_reader`, then one task per page, `list_pages`)
into a staging table of the run's own (`list_staging`). When the last page is in, one
transaction compares staging with the stored membership (`list_diff`), marks `list.add` and
`list.remove` in the outbox and swaps the stored membership. A run that dies half-way leaves
the stored membership untouched; the sweeper resumes it from its checkpoint. This module
starts runs, chooses which are due, and reports them.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import list_staging
from app.db import utcnow
from app.loke.client import LokeClient
from app.models import CustomerList, ListMember, ListRunPage, ListSyncRun, Organization
from app.services import Services
from app.task_names import LISTS_READ
from app.validation import is_list_id

log = logging.getLogger(__name__)

MEMBERS = "/organizations/{org_id}/customer-lists/{list_id}/members"


@dataclass(frozen=True)
class Started:
    list_id: str
    run_id: int
    started: bool  # False: a resync of this list was already running


def start(services: Services, org_id: str, list_id: str) -> Started:
    """Start a resync of one list unless one is running (the running row is the lock)."""
    now = utcnow()
    try:
        with services.db.transaction() as session:
            running = _running(session, org_id, list_id)
            if running is not None:
                return Started(list_id, running.id, False)
            run = ListSyncRun(
                org_id=org_id,
                list_id=list_id,
                status="running",
                next_url=MEMBERS.format(org_id=org_id, list_id=list_id),
                pages=0,
                members=0,
                adds=0,
                removes=0,
                attempts=0,
                started_at=now,
                updated_at=now,
            )
            session.add(run)
            session.flush()
            list_staging.create(session, run.id)
            _list_row(session, org_id, list_id).last_run_id = run.id
            run_id = run.id
    except IntegrityError:
        # A trigger elsewhere (beat, the API, a second beat) won the race: that run stands.
        with services.db.transaction() as session:
            running = _running(session, org_id, list_id)
            if running is None:
                raise
            return Started(list_id, running.id, False)
    services.dispatcher.send(LISTS_READ, (run_id,))
    return Started(list_id, run_id, True)


def start_chosen(services: Services, org_id: str) -> list[Started]:
    """Resync every list the organization opted into."""
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is None or not org.connected:
            return []
        org.lists_synced_at = utcnow()
        chosen = list(org.lists)
    return [start(services, org_id, list_id) for list_id in chosen]


def due_orgs(services: Services) -> list[str]:
    """Connected organizations with chosen lists whose own interval has passed."""
    now = utcnow()
    default = services.settings.list_sync_interval
    with services.db.transaction() as session:
        orgs = session.scalars(select(Organization).where(Organization.connected))
        return [
            org.id
            for org in orgs
            if org.lists
            and (
                org.lists_synced_at is None
                or org.lists_synced_at
                <= now - dt.timedelta(seconds=org.list_sync_interval_seconds or default)
            )
        ]


def clear_stale_staging(services: Services) -> int:
    """Staging tables and page rows of runs that are no longer running (finished, failed,
    gone, cancelled, or purged with their organization): a new resync always stages afresh.
    Returns how many staging tables were dropped."""
    with services.db.transaction() as session:
        running = select(ListSyncRun.id).where(ListSyncRun.status == "running")
        session.execute(
            delete(ListRunPage)
            .where(ListRunPage.run_id.not_in(running))
            .execution_options(synchronize_session=False)
        )
    dropped = 0
    while True:
        with services.db.transaction() as session:
            some = list_staging.drop_stale(session)
        dropped += some
        if some < list_staging.DROPS_PER_TRANSACTION:
            return dropped


def cancel_unchosen(session: Session, org: Organization) -> None:
    """Stop the running resyncs of lists no longer chosen (or of a disconnected organization)
    now, rather than when their last page is in. Their staging goes with the next sweep."""
    unchosen = ListSyncRun.org_id == org.id
    if org.connected:
        unchosen = and_(unchosen, ListSyncRun.list_id.not_in(org.lists))
    session.execute(
        update(ListSyncRun)
        .where(unchosen, ListSyncRun.status == "running")
        .values(status="cancelled", finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _running(session: Session, org_id: str, list_id: str) -> ListSyncRun | None:
    return session.scalars(
        select(ListSyncRun).where(
            ListSyncRun.org_id == org_id,
            ListSyncRun.list_id == list_id,
            ListSyncRun.status == "running",
        )
    ).first()


def _list_row(session: Session, org_id: str, list_id: str) -> CustomerList:
    found = session.get(CustomerList, (org_id, list_id))
    if found is None:
        found = CustomerList(org_id=org_id, id=list_id)
        session.add(found)
    return found


def remember_names(session: Session, org_id: str, lists: list[dict[str, Any]]) -> None:
    """Keep LOKE's list names, which list.add carries. A list whose id no organization's
    choice can hold (see `orgs.connect`) is not kept; a name is kept without NUL characters,
    which the store cannot hold (it is only a label)."""
    for item in lists:
        list_id = item.get("id")
        if is_list_id(list_id):
            name = str(item.get("name") or "").replace("\x00", "")[:255]
            _list_row(session, org_id, list_id).name = name


def overview(services: Services, loke: LokeClient, org_id: str) -> list[dict[str, Any]]:
    """Every LOKE list of the organization, with whether it is synced and how it went."""
    lokes = list(loke.iterate(f"/organizations/{org_id}/customer-lists"))
    with services.db.transaction() as session:
        remember_names(session, org_id, lokes)
        org = session.get(Organization, org_id)
        chosen = set(org.lists) if org else set()
        summaries = {s["id"]: s for s in summaries_of(session, org_id)}
    return [
        {
            "id": item.get("id"),
            "name": item.get("name"),
            "memberCount": item.get("memberCount"),
            "synced": item.get("id") in chosen,
            **{k: v for k, v in summaries.get(item.get("id"), {}).items() if k != "id"},
        }
        for item in lokes
    ]


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
