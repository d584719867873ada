"""Staging a list resync's member pages side by side, and the end of the run.

The run's reader (`reader`) stores each page it reads and sends the page's task
(`lists.stage`), which validates and stages its members here, in parallel on other workers.
Each staging transaction ends by locking the run, so the one that stages the last missing page
sees every other page committed and applies the difference (`diff`).

The page rows are the checkpoint. A page is staged once: its row is marked in the same
transaction. A stalled run is resumed by sending again the task of every page stored but not
staged (`runs.resume`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from app.backfill import paged_runs
from app.core import logs
from app.core.metrics import PAGES
from app.core.services import Services
from app.core.task_names import DELIVERY_FLUSH, LISTS_STAGE
from app.core.validation import summary
from app.lists import diff, runs, staging
from app.loke.client import LokeClient, page_items
from app.loke.errors import LokeError
from app.loke.records import MEMBER, MEMBER_PAGE, ListMemberRecord
from app.store import dialect_sql
from app.store.db import utcnow
from app.store.models import ListRunPage, ListSyncRun, Organization

log = logging.getLogger(__name__)

BIG_DIFF = 10_000  # members added or removed by one run: statistics refreshed outright


class _RunStopped(Exception):
    """The run stopped (finished, cancelled, failed) while this page was read: not staged."""


def stage_page(
    services: Services, loke: LokeClient, run_id: int, seq: int, refetch: bool = False
) -> None:
    """Validate and stage one stored page; if that completed the run, apply the difference.
    With `refetch` (its stored body was unreadable) the page is read from LOKE again first."""
    with paged_runs.crashes_counted(services, ListSyncRun, run_id):
        _stage_page(services, loke, run_id, seq, refetch)


def _stage_page(services: Services, loke: LokeClient, run_id: int, seq: int, refetch: bool) -> None:
    stored = _stored(services, run_id, seq)
    if stored is None:
        return  # staged already (a duplicate of this task), or cleared with its run
    url, body = stored
    try:
        members = _members(url, loke.request("GET", url).content if refetch else body)
    except LokeError as exc:
        runs.page_failed(services, run_id, url, exc, LISTS_STAGE, (run_id, seq, True))
        return
    try:
        ended = _stage(services, run_id, seq, members)
    except _RunStopped:
        return
    PAGES.labels("list").inc()
    if ended is not None:
        _after_the_end(services, ended)


# The page's URL and body, on the reading thread's own connection (`Database.fetch_one`): in
# binary format, the body is a copy, not a hex text to decode.
_STORED = {
    "postgresql": (
        "SELECT url, body FROM list_run_pages"
        " WHERE run_id = %(run_id)s AND seq = %(seq)s AND members IS NULL"
    ),
    "sqlite": (
        "SELECT url, body FROM list_run_pages"
        " WHERE run_id = :run_id AND seq = :seq AND members IS NULL"
    ),
}


def _stored(services: Services, run_id: int, seq: int) -> tuple[str, bytes] | None:
    """The page's URL and body as its reader stored them, unless it is staged already."""
    row = services.db.fetch_one(_STORED, {"run_id": run_id, "seq": seq})
    return None if row is None else (row[0], bytes(row[1] or b""))


def _stage(
    services: Services, run_id: int, seq: int, members: list[ListMemberRecord]
) -> ListSyncRun | None:
    """Stage the page's members; if that completed the run (the difference is then applied in
    the same transaction), the run. Raises _RunStopped if the run stopped."""
    with services.db.transaction() as session:
        connection = session.connection()
        marked = connection.execute(
            _MARK_STAGED, {"run": run_id, "page": seq, "staged": len(members)}
        )
        if not marked.rowcount:
            raise _RunStopped  # a duplicate of this task staged it (or the run was cleared)
        dialect_sql.append_rows(
            session,
            staging.staging_table(run_id),
            staging.COLUMNS,
            _staged_rows(members),
        )
        # Last, and held only to the commit: pages are staged side by side up to here. (One
        # UPDATE both locks the run and counts the page.)
        org_id = connection.execute(
            _COUNT_PAGE, {"run": run_id, "staged": len(members), "now": utcnow()}
        ).scalar()
        if org_id is None:
            raise _RunStopped  # rolls the page back: a stopped run keeps nothing new
        logs.set_context(org_id=org_id)  # for the rest of this task
        if not _complete(session, run_id):
            return None
        run = session.get_one(ListSyncRun, run_id)  # locked already, by the UPDATE
        org = session.get(Organization, run.org_id)
        if org is None or not org.connected or run.list_id not in org.lists:
            run.status, run.finished_at = "cancelled", utcnow()  # no longer chosen
            return run
        diff.apply_difference(session, run)
        run.status = "finished"
        run.next_url = None
        run.finished_at = run.updated_at = utcnow()  # the diff is part of the run
        return run


# The statements of every page's transaction, built once and run as Core, not through the
# ORM: its bulk UPDATE path costs as much CPU a statement as validating the whole page.
_PAGES = cast(Table, ListRunPage.__table__)
_RUNS = cast(Table, ListSyncRun.__table__)
_MARK_STAGED = (
    update(_PAGES)
    .where(
        _PAGES.c.run_id == bindparam("run"),
        _PAGES.c.seq == bindparam("page"),
        _PAGES.c.members.is_(None),
    )
    .values(members=bindparam("staged"), body=None)  # the body's space is free to reuse now
)
_COUNT_PAGE = (
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("run"), _RUNS.c.status == "running")
    .values(
        members=_RUNS.c.members + bindparam("staged"),
        pages=_RUNS.c.pages + 1,
        attempts=0,
        last_error=None,
        updated_at=bindparam("now"),
    )
    .returning(_RUNS.c.org_id)
)
_FIRST_WAITING_AND_LAST = select(
    func.min(_PAGES.c.seq).filter(_PAGES.c.members.is_(None)),
    func.min(_PAGES.c.seq).filter(_PAGES.c.next_url.is_(None)),
).where(_PAGES.c.run_id == bindparam("run"))


def _complete(session: Session, run_id: int) -> bool:
    """Whether the last page and every page before it are staged (seen from under the run's
    lock, so with every other page's staging committed). Pages are stored in sequence, so the
    last page's row means every row before it exists."""
    first_waiting, last = (
        session.connection().execute(_FIRST_WAITING_AND_LAST, {"run": run_id}).one()
    )
    return last is not None and (first_waiting is None or first_waiting > last)


def _staged_rows(members: list[ListMemberRecord]) -> Iterator[tuple[Any, ...]]:
    """The staging rows of the members, in `staging.COLUMNS` order."""
    for m in members:
        yield (m["id"], m.get("email"), m.get("firstName"), m.get("lastName"),
               m.get("phoneNumber"))  # fmt: skip


def _members(url: str, body: bytes) -> list[ListMemberRecord]:
    """The page's members, validated; an unreadable member is left out (and logged). Raises
    LokeError if the body is not a JSON list at all."""
    try:
        # Parsed and validated in one pass, straight from the bytes: the usual case.
        return MEMBER_PAGE.validate_json(body)
    except ValidationError:
        pass  # some member is unreadable (or the body is): find out which, keep the rest
    members = []
    for item in page_items(url, body):
        try:
            members.append(MEMBER.validate_python(item))
        except ValidationError as exc:
            ident = item.get("id") if isinstance(item, dict) else None
            log.warning("unreadable list member %r: %s", ident, summary(exc, limit=1))
    return members


def _after_the_end(services: Services, run: ListSyncRun) -> None:
    """Delivery of what the diff marked, and cleaning up, outside the diff's transaction."""
    # A diff can grow the outbox, the mirror and the membership by a whole list at once, and
    # delivery's claims must not be planned as if they were still small (on an outbox planned
    # as empty, every claim scans it). After a big diff they are analyzed outright: the
    # server's change counters, which `only_if_stale` reads, lag by a second. After a small
    # one, delivery need not wait for statistics (an ANALYZE of a large outbox is slow).
    tables = ("outbox", "customers", "list_members")
    if run.adds + run.removes >= BIG_DIFF:
        services.db.refresh_statistics(*tables)
        services.kicks.kick(DELIVERY_FLUSH, run.org_id)
    else:
        services.kicks.kick(DELIVERY_FLUSH, run.org_id)
        services.db.refresh_statistics(*tables, only_if_stale=True)
    # If this worker dies first, the sweeper's `clear_stale_staging` does it.
    with services.db.transaction() as session:
        clear_run(session, run.id)


def clear_run(session: Session, run_id: int) -> None:
    """Forget what a run staged, once it is over."""
    staging.drop(session, run_id)
    session.execute(delete(ListRunPage).where(ListRunPage.run_id == run_id))
