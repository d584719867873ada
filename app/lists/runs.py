"""List resync runs: starting them (one at a time per list), choosing which are due, stopping
those no longer chosen, and carrying on with those that failed a page or stalled.

LOKE has no list webhooks and no way to see what changed, so each resync reads every member
page (`reader`, one task following X-Next-Page, then one task per page, `stager`) into a staging
table of the run's own (`staging`). When the last page is in, one transaction compares staging
with the stored membership (`diff`), marks `list.add` and `list.remove` in the outbox and swaps
the stored membership. A run that dies half-way leaves the stored membership untouched; the
sweeper resumes it from its checkpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.backfill import paged_runs
from app.core import logs
from app.core.services import Services
from app.core.task_names import LISTS_READ, LISTS_STAGE
from app.lists import staging
from app.lists.names import list_row
from app.loke.errors import LokeError
from app.store.db import utcnow
from app.store.models import ListRunPage, ListSyncRun, Organization

log = logging.getLogger(__name__)

MEMBERS = "/organizations/{org_id}/customer-lists/{list_id}/members"


@dataclass(frozen=True)
class Started:
    """The resync run a start asked for."""

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
            staging.create(session, run.id)
            list_row(session, org_id, list_id).last_run_id = run.id
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
            some = staging.drop_stale(session)
        dropped += some
        if some < staging.DROPS_PER_TRANSACTION:
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


def page_failed(
    services: Services, run_id: int, url: str, exc: LokeError, task: str, args: tuple[Any, ...]
) -> None:
    """Count the failure on the run; the task is sent again after a backoff, unless the run
    stopped (a 404 ends it as `gone`; out of attempts, `failed`)."""
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, run_id, with_for_update=True)
        if run is None or run.status != "running":
            return
        logs.set_context(org_id=run.org_id)
        delay = paged_runs.record_failure(services, run, url, exc, "gone")
    if delay is not None:
        services.dispatcher.send(task, args, countdown=delay)


def resume(services: Services, run_id: int) -> None:
    """Go on with a stalled run: the tasks of its pages stored but not staged are sent again
    (they may have been lost with a worker; one that was not does nothing twice), and a reader
    (which stops at once if every page is stored, or if the reader it replaces reads on)."""
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, run_id)
        if run is None or run.status != "running":
            return
        waiting = list(
            session.scalars(
                select(ListRunPage.seq)
                .where(ListRunPage.run_id == run_id, ListRunPage.members.is_(None))
                .order_by(ListRunPage.seq)
            )
        )
    for seq in waiting:
        services.dispatcher.send(LISTS_STAGE, (run_id, seq))
    services.dispatcher.send(LISTS_READ, (run_id,))
