"""Member pages of a list resync: read in turn, staged side by side.

X-Next-Page makes reading a chain: a page's URL is known only once the page before it is read.
So each page task reads its page, records the next page and sends its task at once, and only
then validates and stages its own members. Reading goes at LOKE's pace while staging runs in
parallel on other workers. Each staging transaction ends by locking the run, so the one that
stages the last missing page sees every other page committed and applies the difference.

The page rows are the checkpoint: a page is staged at most once (its row is marked in the same
transaction), a task is sent once per page (whoever records the row sends it), and a stalled run
is resumed by sending again the task of every page not staged yet.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app import dialect_sql, list_diff, logs, paged_runs
from app.db import utcnow
from app.events import MEMBER, MEMBER_PAGE, ListMemberRecord
from app.lists import remember_names
from app.loke.client import LokeClient, UnreadPage
from app.loke.errors import LokeError
from app.metrics import PAGES
from app.models import ListRunPage, ListStaging, ListSyncRun, Organization
from app.services import Services
from app.task_names import DELIVERY_FLUSH, LISTS_PAGE

log = logging.getLogger(__name__)

BIG_DIFF = 10_000  # members added or removed by one run: statistics refreshed outright
STAGED_COLUMNS = ("run_id", "customer_id", "email", "first_name", "last_name", "phone_number")


class PageTask(NamedTuple):
    """The arguments of a `lists.page` task for one page."""

    run_id: int
    url: str
    previous_url: str | None
    seq: int


class _RunStopped(Exception):
    """The run stopped (finished, cancelled, failed) while this page was read: not staged."""


def run_page(
    services: Services,
    loke: LokeClient,
    run_id: int,
    url: str | None = None,
    previous_url: str | None = None,
    seq: int | None = None,
) -> None:
    """Read, then stage, one page: the one given, or without `seq` (a new or stalled run) the
    first page not staged yet, after sending again the tasks of the others."""
    task = PageTask(run_id, url, previous_url, seq) if url and seq is not None else None
    if task is None:
        task = _resume(services, run_id)
        if task is None:
            return  # the run is over
    if task.seq == 0:
        _remember_name(services, loke, task.run_id)
    # Nothing is checked before the GET, which starts the moment the task does: a duplicate of
    # this task, or a task of a run that stopped, costs one GET and goes no further (no next
    # page is recorded for a run that stopped, and a page is staged once).
    paginator = loke.paginator(task.url, seen=(task.previous_url,) if task.previous_url else ())
    try:
        unread = loke.get_unread_page(paginator)
        # The next page's task goes first, before this page's body is even parsed.
        if unread.next_url is not None and _record_next(services, task, unread.next_url):
            successor = PageTask(task.run_id, unread.next_url, task.url, task.seq + 1)
            services.dispatcher.send(LISTS_PAGE, tuple(successor))
        members = _members(unread)
    except LokeError as exc:
        _failed(services, task, exc)
        return
    try:
        ended = _stage(services, task, members, last=unread.next_url is None)
    except _RunStopped:
        return
    PAGES.labels("list").inc()
    if ended is not None:
        _after_the_end(services, ended)


def _after_the_end(services: Services, run: ListSyncRun) -> None:
    """Delivery of what the diff marked, and cleaning up, outside the diff's transaction."""
    # A diff can grow the outbox, the mirror and the membership by a whole list at once, and
    # delivery's first claim must not be planned as if they were still small (a 400k-row
    # outbox planned as empty took minutes a claim). After a big diff they are analyzed
    # outright: the server's change counters, which `only_if_stale` reads, lag by a second.
    big = run.adds + run.removes >= BIG_DIFF
    services.db.refresh_statistics("outbox", "customers", "list_members", only_if_stale=not big)
    services.kicks.kick(DELIVERY_FLUSH, run.org_id)
    # If this worker dies first, the sweeper's `clear_stale_staging` does it.
    with services.db.transaction() as session:
        clear_run(session, run.id)


def clear_run(session: Session, run_id: int) -> None:
    """Forget what a run staged, once it is over."""
    session.execute(delete(ListStaging).where(ListStaging.run_id == run_id))
    session.execute(delete(ListRunPage).where(ListRunPage.run_id == run_id))


def _resume(services: Services, run_id: int) -> PageTask | None:
    """The first page not staged yet, to be read by this task; the tasks of the other pages
    not staged yet are sent again (their tasks may have been lost with a worker; a task that
    was not is recognized by its page row and does nothing twice)."""
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, run_id)
        if run is None or run.status != "running":
            return None
        rows = session.execute(
            select(ListRunPage.seq, ListRunPage.url, ListRunPage.members)
            .where(ListRunPage.run_id == run_id)
            .order_by(ListRunPage.seq)
        ).all()
    urls = {row.seq: row.url for row in rows}
    waiting = [
        PageTask(run_id, row.url, urls.get(row.seq - 1), row.seq)
        for row in rows
        if row.members is None
    ]
    for other in waiting[1:]:
        services.dispatcher.send(LISTS_PAGE, tuple(other))
    return waiting[0] if waiting else None


def _remember_name(services: Services, loke: LokeClient, run_id: int) -> None:
    """list.add carries the list's name: read it once per run (a 404 surfaces on the members)."""
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, run_id)
        if run is None or run.status != "running":
            return
        org_id, list_id = run.org_id, run.list_id
    try:
        found = loke.request("GET", f"/organizations/{org_id}/customer-lists/{list_id}").json()
    except (LokeError, ValueError):
        return
    if isinstance(found, dict):
        with services.db.transaction() as session:
            remember_names(session, org_id, [found])


# One statement, committed on its own: recording the next page is all that stands between two
# GETs of a run, so it is kept to one round trip.
_RECORD_NEXT = {
    "postgresql": (
        "INSERT INTO list_run_pages (run_id, seq, url, last)"
        " SELECT %(run_id)s, %(seq)s, %(url)s, false WHERE EXISTS (SELECT 1 FROM list_sync_runs"
        " WHERE id = %(run_id)s AND status = 'running') ON CONFLICT DO NOTHING RETURNING seq"
    ),
    "sqlite": (
        "INSERT INTO list_run_pages (run_id, seq, url, last)"
        " SELECT :run_id, :seq, :url, 0 WHERE EXISTS (SELECT 1 FROM list_sync_runs"
        " WHERE id = :run_id AND status = 'running') ON CONFLICT DO NOTHING RETURNING seq"
    ),
}


def _record_next(services: Services, task: PageTask, next_url: str) -> bool:
    """Record the next page of a running run; True if this task did, and so sends its task
    (False: a duplicate of this task or a resumed run already had, or the run stopped)."""
    params = {"run_id": task.run_id, "seq": task.seq + 1, "url": next_url}
    return services.db.execute_one(_RECORD_NEXT, params) is not None


def _stage(
    services: Services, task: PageTask, members: list[ListMemberRecord], last: bool
) -> ListSyncRun | None:
    """Stage the page's members; if that completed the run (the difference is then applied in
    the same transaction), the run. Raises _RunStopped if the run stopped."""
    with services.db.transaction() as session:
        marked = session.execute(
            update(ListRunPage)
            .where(
                ListRunPage.run_id == task.run_id,
                ListRunPage.seq == task.seq,
                ListRunPage.members.is_(None),
            )
            .values(members=len(members), last=last)
            .execution_options(synchronize_session=False)
        )
        if not marked.rowcount:  # type: ignore[attr-defined]
            raise _RunStopped  # a duplicate of this task staged it (or the run was cleared)
        dialect_sql.append_rows(
            session, ListStaging.__table__, STAGED_COLUMNS, _staged_rows(task.run_id, members)
        )
        # Last, and held only to the commit: pages are staged side by side up to here. (One
        # UPDATE both locks the run and counts the page.)
        org_id = session.execute(
            update(ListSyncRun)
            .where(ListSyncRun.id == task.run_id, ListSyncRun.status == "running")
            .values(
                members=ListSyncRun.members + len(members),
                pages=ListSyncRun.pages + 1,
                attempts=0,
                last_error=None,
                updated_at=utcnow(),
            )
            .returning(ListSyncRun.org_id)
            .execution_options(synchronize_session=False)
        ).scalar()
        if org_id is None:
            raise _RunStopped  # rolls the page back: a stopped run keeps nothing new
        logs.set_context(org_id=org_id)  # for the rest of this task
        if not _complete(session, task.run_id):
            return None
        run = session.get_one(ListSyncRun, task.run_id)  # locked already, by the UPDATE
        org = session.get(Organization, run.org_id)
        if org is None or not org.connected or run.list_id not in org.lists:
            run.status, run.finished_at = "cancelled", utcnow()  # no longer chosen
            return run
        list_diff.apply_difference(session, run)
        run.status = "finished"
        run.next_url = None
        run.finished_at = run.updated_at = utcnow()  # the diff is part of the run
        return run


def _complete(session: Session, run_id: int) -> bool:
    """Whether the last page and every page before it are staged (seen from under the run's
    lock, so with every other page's staging committed)."""
    first_waiting, last = session.execute(
        select(
            func.min(ListRunPage.seq).filter(ListRunPage.members.is_(None)),
            func.min(ListRunPage.seq).filter(ListRunPage.last),
        ).where(ListRunPage.run_id == run_id)
    ).one()
    return last is not None and (first_waiting is None or first_waiting > last)


def _failed(services: Services, task: PageTask, exc: LokeError) -> None:
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, task.run_id, with_for_update=True)
        if run is None or run.status != "running":
            return
        logs.set_context(org_id=run.org_id)
        delay = paged_runs.record_failure(services, run, task.url, exc, "gone")
    if delay is not None:
        services.dispatcher.send(LISTS_PAGE, tuple(task), countdown=delay)


def _staged_rows(run_id: int, members: list[ListMemberRecord]) -> Iterator[tuple[Any, ...]]:
    """The staging rows of the members, in STAGED_COLUMNS order."""
    for m in members:
        yield (run_id, m["id"], m.get("email"), m.get("firstName"), m.get("lastName"),
               m.get("phoneNumber"))  # fmt: skip


def _members(unread: UnreadPage) -> list[ListMemberRecord]:
    """The page's members, validated; an unreadable member is left out (and logged). Raises
    LokeError if the body is not a JSON list at all."""
    try:
        # Parsed and validated in one pass, straight from the bytes: the usual case.
        return MEMBER_PAGE.validate_json(unread.answer.content)
    except ValidationError:
        pass  # some member is unreadable (or the body is): find out which, keep the rest
    members = []
    for item in unread.parsed().items:
        try:
            members.append(MEMBER.validate_python(item))
        except ValidationError:
            log.warning(
                "unreadable list member %r", item.get("id") if isinstance(item, dict) else None
            )
    return members
