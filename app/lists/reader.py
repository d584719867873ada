"""Reading a list resync's member pages: one reader per run follows X-Next-Page.

X-Next-Page makes reading a chain: a page's URL is known only once the page before it is read.
So one reader task (`lists.read`) follows the chain at LOKE's pace. It stores each page it reads
(its body and the next page's URL, one statement) and sends that page's own task (`lists.stage`,
`stager`), which validates and stages its members on other workers. A thread of the
reader's process does the storing and sending, in order, while the next GET goes out.

A page is stored once: two readers of one run (a redelivered task, or a resume while the reader
was only slow) race for the page's row, and the loser stops. A reader hands over to a fresh task
after READ_SECONDS; one whose GET fails is sent again after a backoff, and either reads on after
the last page stored.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from sqlalchemy import select

from app.backfill import paged_runs
from app.core.services import Services
from app.core.task_names import LISTS_READ, LISTS_STAGE
from app.lists import runs
from app.lists.names import remember_names
from app.loke.client import LokeClient
from app.loke.errors import LokeError
from app.store.models import ListRunPage, ListSyncRun

# A reader hands over to a fresh task of its own after this long, so that no task holds a
# worker for the whole of a long list (a warm shutdown waits for it); a hop is cheap.
READ_SECONDS = 10.0
UNWRITTEN_PAGES = 4  # pages a reader may have read ahead of their writing


class ReadAt(NamedTuple):
    """Where a reader goes on: the page's sequence number, its URL, the URL before it."""

    seq: int
    url: str
    previous_url: str | None


class StoredPage(NamedTuple):
    """A page as its reader read it; staged from its row by the page's task."""

    url: str
    next_url: str | None
    body: bytes


def read_pages(services: Services, loke: LokeClient, run_id: int) -> None:
    """Read the run's pages from the first one not stored yet, storing each and sending its
    task, until the last page (or READ_SECONDS, then a fresh reader goes on)."""
    with paged_runs.crashes_counted(services, ListSyncRun, run_id):
        _read_pages(services, loke, run_id)


def _read_pages(services: Services, loke: LokeClient, run_id: int) -> None:
    at = _where_to_read(services, run_id)
    if at is None:
        return  # every page is stored, or the run is over
    if at.seq == 0:
        _remember_name(services, loke, run_id)
    handover = time.monotonic() + READ_SECONDS
    paginator = loke.paginator(at.url, seen=(at.previous_url,) if at.previous_url else ())
    seq = at.seq
    with _PageWriter(services, run_id) as writer:
        while writer.going():
            try:
                unread = loke.get_unread_page(paginator)
            except LokeError as exc:
                if writer.finish():  # the retry reads on after the last page stored
                    runs.page_failed(
                        services, run_id, paginator.current, exc, LISTS_READ, (run_id,)
                    )
                return
            writer.store(seq, StoredPage(unread.url, unread.next_url, unread.answer.content))
            if unread.next_url is None:
                return
            seq += 1
            if time.monotonic() > handover:
                if writer.finish():  # the next reader reads on after the last page stored
                    services.dispatcher.send(LISTS_READ, (run_id,))
                return


_writers: dict[int, ThreadPoolExecutor] = {}


def _writer_thread() -> ThreadPoolExecutor:
    """This process's page-writing thread, kept for its life (as is the database connection it
    uses), and shared by the readers of the process (each one's pages stay in order)."""
    pid = os.getpid()
    if pid not in _writers:  # (a forked child does not inherit a running thread)
        _writers[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="list-page-writer")
    return _writers[pid]


class _PageWriter:
    """Stores the pages a reader reads, and sends their tasks, in order on a thread of its own,
    so that the next GET goes out while a page is written (under load, writing a page takes
    about as long as reading one). Errors of a write surface in the reader. Once a page is
    refused (another reader stored it first, or the run stopped), nothing more is written."""

    def __init__(self, services: Services, run_id: int) -> None:
        self.services = services
        self.run_id = run_id
        self.refused = False
        self._thread = _writer_thread()
        self._writes: deque[Future[None]] = deque()

    def __enter__(self) -> _PageWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.finish()
            return
        for write in self._writes:  # the reader failed: its error is the one raised
            write.exception()

    def store(self, seq: int, page: StoredPage) -> None:
        while len(self._writes) >= UNWRITTEN_PAGES:  # bounds the bodies held in memory
            self._writes.popleft().result()
        self._writes.append(self._thread.submit(self._write, seq, page))

    def going(self) -> bool:
        """Whether to read on: no page refused (a write that failed raises here)."""
        while self._writes and self._writes[0].done():
            self._writes.popleft().result()
        return not self.refused

    def finish(self) -> bool:
        """Wait for every write; whether all were stored (a write that failed raises here)."""
        while self._writes:
            self._writes.popleft().result()
        return not self.refused

    def _write(self, seq: int, page: StoredPage) -> None:
        if self.refused:
            return
        if not _store(self.services, self.run_id, seq, page):
            self.refused = True
            return
        self.services.dispatcher.send(LISTS_STAGE, (self.run_id, seq))


def _where_to_read(services: Services, run_id: int) -> ReadAt | None:
    """The page after the last one stored (the first page if none is), if the run is running
    and its last page is not stored yet."""
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, run_id)
        if run is None or run.status != "running" or run.next_url is None:
            return None
        newest = session.execute(
            select(ListRunPage.seq, ListRunPage.url, ListRunPage.next_url)
            .where(ListRunPage.run_id == run_id)
            .order_by(ListRunPage.seq.desc())
            .limit(1)
        ).one_or_none()
        first_url = run.next_url  # a running run's `next_url` keeps its first page's URL
    if newest is None:
        return ReadAt(0, first_url, None)
    if newest.next_url is None:
        return None
    return ReadAt(newest.seq + 1, newest.next_url, newest.url)


# One statement, committed on its own: the writing thread's one round trip a page. The row's
# key (run, seq) settles a race between two readers.
_STORE = {
    "postgresql": (
        "INSERT INTO list_run_pages (run_id, seq, url, next_url, body)"
        " SELECT %(run_id)s, %(seq)s, %(url)s, %(next_url)s, %(body)s WHERE EXISTS (SELECT 1"
        " FROM list_sync_runs WHERE id = %(run_id)s AND status = 'running')"
        " ON CONFLICT DO NOTHING RETURNING seq"
    ),
    "sqlite": (
        "INSERT INTO list_run_pages (run_id, seq, url, next_url, body)"
        " SELECT :run_id, :seq, :url, :next_url, :body WHERE EXISTS (SELECT 1"
        " FROM list_sync_runs WHERE id = :run_id AND status = 'running')"
        " ON CONFLICT DO NOTHING RETURNING seq"
    ),
}


def _store(services: Services, run_id: int, seq: int, page: StoredPage) -> bool:
    """Store a page read for a running run; True if this reader did (and so sends its task)."""
    params = {"run_id": run_id, "seq": seq, **page._asdict()}
    return services.db.execute_one(_STORE, params) is not None


def _remember_name(services: Services, loke: LokeClient, run_id: int) -> None:
    """list.add carries the list's name: read it once per run (a 404 surfaces on the members)."""
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, run_id)
        if run is None or run.status != "running":
            return
        org_id, list_id = run.org_id, run.list_id
    try:
        loke_list = loke.request("GET", f"/organizations/{org_id}/customer-lists/{list_id}").json()
    except (LokeError, ValueError):
        return
    if isinstance(loke_list, dict):
        with services.db.transaction() as session:
            remember_names(session, org_id, [loke_list])
