"""Paged runs over LOKE: fetching the page at a backfill's checkpoint, and what list resyncs
share with backfills, retrying a page that failed with a bound, finding runs whose task was
lost with a worker, and stopping a run whose page tasks keep crashing."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from app.core import logs
from app.core.backoff import backoff_seconds
from app.core.dispatch import BrokerUnavailable
from app.core.services import Services
from app.loke.client import LokeClient, Page
from app.loke.errors import LokeError
from app.store.db import utcnow
from app.store.models import PagedRun

log = logging.getLogger(__name__)

Run = TypeVar("Run", bound=PagedRun)

MAX_PAGE_RETRY_SECONDS = 600.0


@dataclass(frozen=True)
class Fetched:
    """A page fetched for a run: the organization, the page's URL and the page."""

    org_id: str
    url: str
    page: Page


def fetch(
    services: Services,
    loke: LokeClient,
    model: type[PagedRun],
    run_id: int,
    task_name: str,
    url: str | None = None,
    previous_url: str | None = None,
) -> Fetched | None:
    """The page at the run's checkpoint (or at `url`, sent ahead by the task of the page
    before: see `send_next`), or None when the run is not running or the fetch failed (then
    the failure is recorded and a retry scheduled, or the run stopped)."""
    with services.db.transaction() as session:
        run = session.get(model, run_id)
        if run is None or run.status != "running" or not run.next_url:
            return None
        org_id = run.org_id
        if url is None:
            url, previous_url = run.next_url, run.previous_url
    logs.set_context(org_id=org_id)  # for the rest of this task
    paginator = loke.paginator(url, seen=(previous_url,) if previous_url else ())
    try:
        return Fetched(org_id, url, loke.get_page(paginator))
    except LokeError as exc:
        _failed(services, model, run_id, url, exc, task_name)
        return None


def lock_at(session: Session, model: type[Run], run_id: int, url: str) -> Run | None:
    """The run, locked, if it is still running at `url` (else a duplicate task got there first,
    or the page before this one was not applied after all). Waits for the task of the page
    before to commit, if it still holds the lock."""
    run = session.get(model, run_id, with_for_update=True)
    if run is None or run.status != "running" or run.next_url != url:
        return None
    return run


def send_next(services: Services, task_name: str, run_id: int, fetched: Fetched) -> None:
    """Send the task of the next page now, with its URL, so that it fetches that page while
    this one is applied: a run goes at the pace of the slower of LOKE and us, not of both in
    turn. Call it holding the run's lock (from `lock_at`): the next task applies its page only
    once it finds the checkpoint at its URL, after this transaction commits; if this one rolls
    back instead, the next finds the checkpoint short of its URL and leaves the page to the
    retry of this one."""
    if fetched.page.next_url is not None:
        services.dispatcher.send(task_name, (run_id, fetched.page.next_url, fetched.url))


def advance(run: PagedRun, fetched: Fetched) -> None:
    """Move the checkpoint past the page just applied (the run finishes after the last)."""
    run.previous_url, run.next_url = fetched.url, fetched.page.next_url
    run.pages += 1
    run.attempts, run.last_error = 0, None
    run.updated_at = utcnow()
    if fetched.page.next_url is None:
        run.status, run.finished_at = "finished", run.updated_at


def _failed(
    services: Services,
    model: type[PagedRun],
    run_id: int,
    url: str,
    exc: LokeError,
    task_name: str,
) -> None:
    with services.db.transaction() as session:
        run = session.get(model, run_id, with_for_update=True)
        if run is None or run.status != "running" or run.next_url != url:
            return
        delay = record_failure(services, run, url, exc, not_found_status="failed")
    if delay is not None:
        services.dispatcher.send(task_name, (run_id,), countdown=delay)


def record_failure(
    services: Services, run: PagedRun, url: str, exc: LokeError, not_found_status: str
) -> float | None:
    """Count a failed page on the run (locked by the caller) and stop the run if the failure
    is final (404: `not_found_status`; not retryable, or out of attempts: failed). Returns the
    delay before the page is tried again, or None when the run stopped."""
    settings = services.settings
    run.attempts += 1
    run.last_error = str(exc)
    run.updated_at = utcnow()
    stop = None
    if exc.not_found:
        stop = not_found_status
    elif not exc.retryable or run.attempts >= settings.backfill_page_attempts:
        stop = "failed"
    if stop is not None:
        # Stopped where it failed: starting it again resumes from this checkpoint.
        run.status, run.finished_at = stop, run.updated_at
        log.error("%s %s stopped (%s) on %s: %s", type(run).__name__, run.id, stop, url, exc)
        return None
    delay = backoff_seconds(
        run.attempts - 1, settings.backfill_retry_base_seconds, MAX_PAGE_RETRY_SECONDS
    )
    log.warning("%s %s: page failed (%s); retry in %.0fs", type(run).__name__, run.id, exc, delay)
    return delay


def stalled(services: Services, model: type[PagedRun]) -> list[int]:
    """Running runs with no progress for BACKFILL_STALL_SECONDS (their task was lost with a
    worker); touched so that the next sweep waits again before sending another task."""
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=services.settings.backfill_stall_seconds)
    with services.db.transaction() as session:
        runs = list(
            session.scalars(
                select(model)
                .where(model.status == "running", model.updated_at < cutoff)
                .with_for_update(skip_locked=True)
            )
        )
        for run in runs:
            run.updated_at = now
        return [run.id for run in runs]


# What a crashed task's error keeps of its message on the run (the worker's log has it whole).
ERROR_CHARS = 500


@contextmanager
def crashes_counted(services: Services, model: type[PagedRun], run_id: int) -> Iterator[None]:
    """Around a page task's work. An error that none of the task's own retries covers (a bug,
    or data the store refuses) is counted on the run like a failed page, and raised again for
    the worker's log. The sweeper sends a stalled run's work again; one whose tasks keep
    crashing stops `failed` after BACKFILL_PAGE_ATTEMPTS, with the error on the run, instead
    of being sent again for ever. An outage of the database or the broker is not counted: it
    is no fault of the run's, and the run goes on once they are back."""
    try:
        yield
    except Exception as exc:
        if _is_outage(exc):
            raise
        try:
            _count_crash(services, model, run_id, exc)
        except SQLAlchemyError:
            log.exception("%s %s: could not count a crash on the run", model.__name__, run_id)
        raise


def _is_outage(exc: Exception) -> bool:
    """A lost or refused connection (to PostgreSQL or the broker), or a deadlock."""
    return isinstance(exc, OperationalError | BrokerUnavailable) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def _count_crash(services: Services, model: type[PagedRun], run_id: int, exc: Exception) -> None:
    with services.db.transaction() as session:
        run = session.get(model, run_id, with_for_update=True)
        if run is None or run.status != "running":
            return
        run.attempts += 1
        run.last_error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        # `updated_at` stays: it is the time of the run's last progress, which the sweeper
        # goes by to send the crashed work again.
        if run.attempts >= services.settings.backfill_page_attempts:
            run.status, run.finished_at = "failed", utcnow()
            log.error(
                "%s %s stopped (failed) after %d crashes: %s",
                model.__name__, run_id, run.attempts, run.last_error,
            )  # fmt: skip
