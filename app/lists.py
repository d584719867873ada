"""Customer lists: opt-in membership, resynced by a full re-read and a diff computed in SQL.

LOKE has no list webhooks and no way to see what changed, so each resync reads every member
page (one task per page, checkpointed) into a staging table keyed by the run. When the last page
is in, one transaction compares staging with the stored membership, marks `list.add` and
`list.remove` in the outbox and swaps the stored membership. A run that dies half-way leaves
the stored membership untouched; the sweeper resumes it from its checkpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Select, and_, delete, exists, func, literal, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import dialect_sql, mirror, paged_runs
from app.db import utcnow
from app.delivery import outbox
from app.events import CustomerTiny
from app.loke.client import LokeClient
from app.loke.errors import LokeError
from app.metrics import PAGES
from app.models import (
    Customer,
    CustomerList,
    ListMember,
    ListStaging,
    ListSyncRun,
    Organization,
)
from app.services import Services
from app.task_names import DELIVERY_FLUSH, LISTS_PAGE

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
            _list_row(session, org_id, list_id).last_run_id = run.id
            run_id = run.id
    except IntegrityError:
        # A trigger elsewhere (beat, the API, a second beat) won the race: that run stands.
        with services.db.transaction() as session:
            running = _running(session, org_id, list_id)
            if running is None:
                raise
            return Started(list_id, running.id, False)
    services.dispatcher.send(LISTS_PAGE, (run_id,))
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


def run_page(
    services: Services,
    loke: LokeClient,
    run_id: int,
    url: str | None = None,
    previous_url: str | None = None,
) -> None:
    """Stage one page of members (the checkpoint's, or `url`, sent ahead); after the last,
    apply the difference."""
    if url is None:
        _remember_name_on_first_page(services, loke, run_id)
    fetched = paged_runs.fetch(
        services,
        loke,
        ListSyncRun,
        run_id,
        LISTS_PAGE,
        not_found_status="gone",
        url=url,
        previous_url=previous_url,
    )
    if fetched is None:
        return
    members = _members(fetched.page.items)
    with services.db.transaction() as session:
        run = paged_runs.lock_at(session, ListSyncRun, run_id, fetched.url)
        if run is None:
            return
        org = session.get(Organization, run.org_id)
        if org is None or not org.connected or run.list_id not in org.lists:
            run.status, run.finished_at = "cancelled", utcnow()  # no longer chosen
            _clear_staging(session, run_id)
            return
        paged_runs.send_next(services, LISTS_PAGE, run_id, fetched)
        _stage(session, run_id, members)
        # A member not yet in the mirror gets a contact built from the member record, marked
        # now, so it reaches the CRM before the list.add marked at the end of the run.
        created = mirror.apply_customers(
            session,
            run.org_id,
            [mirror.change_from_tiny(m) for m in _unknown(session, run.org_id, members)],
        )
        run.members += len(members)
        if paged_runs.advance(run, fetched):
            _apply_difference(session, run)
            run.finished_at = run.updated_at = utcnow()  # the diff is part of the run
    PAGES.labels("list").inc()
    # Members are looked up in the mirror page by page, and delivery looks them up in the
    # membership by the thousand: plan both for the tables as they are now.
    services.db.refresh_statistics("customers", "outbox", "list_members", only_if_stale=True)
    if created or run.status == "finished":
        services.kicks.kick(DELIVERY_FLUSH, fetched.org_id)
    if run.status == "finished":
        # Not in the diff's transaction, which it would only make longer; if this worker dies
        # first, the sweeper's `clear_stale_staging` does it.
        with services.db.transaction() as session:
            _clear_staging(session, run_id)


def clear_stale_staging(services: Services) -> int:
    """Staging rows of runs that are no longer running (finished, failed, gone, cancelled):
    a new resync always stages afresh. Returns how many were deleted."""
    with services.db.transaction() as session:
        not_running = select(ListSyncRun.id).where(ListSyncRun.status != "running")
        result = session.execute(
            delete(ListStaging)
            .where(ListStaging.run_id.in_(not_running))
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def _remember_name_on_first_page(services: Services, loke: LokeClient, run_id: int) -> None:
    """list.add carries the list's name: read it once per run (a 404 surfaces on the members)."""
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, run_id)
        if run is None or run.status != "running" or run.pages:
            return
        org_id, list_id = run.org_id, run.list_id
    try:
        found = loke.request("GET", f"/organizations/{org_id}/customer-lists/{list_id}").json()
    except (LokeError, ValueError):
        return
    if isinstance(found, dict):
        with services.db.transaction() as session:
            remember_names(session, org_id, [found])


_MEMBER_PAGE = TypeAdapter(list[CustomerTiny])


def _members(items: list[dict[str, Any]]) -> list[CustomerTiny]:
    try:
        return _MEMBER_PAGE.validate_python(items)  # one call for the page: the usual case
    except ValidationError:
        pass  # some member is unreadable: find it, keep the rest
    members = []
    for item in items:
        try:
            members.append(CustomerTiny.model_validate(item))
        except ValidationError:
            log.warning(
                "unreadable list member %r", item.get("id") if isinstance(item, dict) else None
            )
    return members


def _stage(session: Session, run_id: int, members: list[CustomerTiny]) -> None:
    if members:
        rows = [{"run_id": run_id, "customer_id": m.id} for m in members]
        dialect = dialect_sql.name(session)
        session.execute(_staging_insert(dialect), dialect_sql.bulk_params(dialect, rows))


@cache
def _staging_insert(dialect: str) -> Any:
    columns = ("run_id", "customer_id")
    return dialect_sql.bulk_insert_for(
        dialect, ListStaging.__table__, columns
    ).on_conflict_do_nothing()


def _unknown(session: Session, org_id: str, members: list[CustomerTiny]) -> list[CustomerTiny]:
    """Members the mirror does not have yet (most pages of a resync: none)."""
    known = set(
        session.scalars(
            select(Customer.id).where(
                Customer.org_id == org_id,
                dialect_sql.is_any_of(session, Customer.id, [m.id for m in members]),
            )
        )
    )
    return [m for m in members if m.id not in known]


def _apply_difference(session: Session, run: ListSyncRun) -> None:
    """In SQL, whatever the list's size: swap the membership and mark adds and removes."""
    org_id, list_id = run.org_id, run.list_id
    postgres = dialect_sql.name(session) == "postgresql"
    if postgres:
        # The staging table goes from empty to a whole list within minutes, faster than
        # autovacuum notices: without fresh statistics the planner compares every staged
        # member with every stored one (seconds become hours at 200k).
        session.execute(text("ANALYZE list_staging, list_members"))
    stored = and_(ListMember.org_id == org_id, ListMember.list_id == list_id)
    is_stored = exists().where(stored, ListMember.customer_id == ListStaging.customer_id)
    is_staged = exists().where(
        ListStaging.run_id == run.id, ListStaging.customer_id == ListMember.customer_id
    )
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
        new = select(ListStaging.customer_id).where(ListStaging.run_id == run.id, ~is_stored)
        gone = select(ListMember.customer_id).where(stored, ~is_staged)
        run.adds = outbox.mark_selected(session, org_id, "list", _keyed(list_id, new.subquery().c))
        run.removes = outbox.mark_selected(
            session, org_id, "list", _keyed(list_id, gone.subquery().c)
        )
        session.execute(remove)
        session.execute(add)
    log.info("list %s of %s: %d added, %d removed", list_id, org_id, run.adds, run.removes)


def _keyed(list_id: str, members: Any) -> Select[str, str]:
    """The outbox rows (key, customer_id) of these members of the list."""
    key = literal(f"{list_id}:") + members.customer_id
    return select(key.label("key"), members.customer_id.label("customer_id"))


def _clear_staging(session: Session, run_id: int) -> None:
    session.execute(delete(ListStaging).where(ListStaging.run_id == run_id))


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
    """Keep LOKE's list names, which list.add carries."""
    for item in lists:
        if isinstance(item.get("id"), str):
            _list_row(session, org_id, item["id"]).name = str(item.get("name") or "")[:255]


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
