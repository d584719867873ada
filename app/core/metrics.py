"""Prometheus metrics: what each process counts, and what the database says at scrape time.

Counters and histograms live in the process that observes them (web: webhooks; workers: apply
and delivery). With PROMETHEUS_MULTIPROC_DIR set (the image sets it, compose mounts a fresh tmpfs
there, `loke-sync run` a fresh var/metrics; unset, each process tree makes a fresh one of its
own: workers/metrics_dir.py), every process on a machine writes there and the /metrics of any
web process on that machine serves them all; a machine that runs only workers serves the same
on WORKER_METRICS_PORT. gunicorn.conf.py removes the files of dead processes at start. Gauges of
shared state (backlogs, dead letters, backfill and list progress, queue depths) are read from
PostgreSQL and the broker when /metrics is scraped, so any web process reports all of them.

Who may read them: the web's /metrics asks for METRICS_TOKEN when it is set (`app.web.health`).
WORKER_METRICS_PORT is prometheus_client's own server, which has no token (only TLS client
certificates): it serves this machine's counters (labelled with organization ids) and reads
nothing from the database, and must be kept on a private network.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.core.queues import QueueName
from app.core.services import Services
from app.store.db import utcnow
from app.store.models import (
    BackfillRun,
    DeadLetter,
    DeliveryConflict,
    DeliveryState,
    InboxEvent,
    ListSyncRun,
    OutboxEntry,
)

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

WEBHOOKS = Counter(
    "loke_sync_webhooks", "Webhooks received, by event type and answer", ["event_type", "answer"]
)
EVENTS = Counter("loke_sync_events", "Stored events processed, by outcome", ["outcome"])
APPLY_LATENCY = Histogram(
    "loke_sync_apply_latency_seconds",
    "From LOKE's own timestamp (since=payload) or from arrival (since=arrival) to applied",
    ["since"],
    buckets=LATENCY_BUCKETS,
)
DELIVERY_LATENCY = Histogram(
    "loke_sync_delivery_latency_seconds",
    "From LOKE's own timestamp (since=payload) or from entering the outbox (since=outbox) to "
    "acknowledged by the CRM",
    ["since"],
    buckets=LATENCY_BUCKETS,
)
DELIVERY_BATCHES = Counter(
    "loke_sync_delivery_batches",
    "Batches sent, by destination (organization) and outcome (delivered, retry, dead)",
    ["destination", "outcome"],
)
DELIVERY_OPERATIONS = Counter(
    "loke_sync_delivery_operations",
    "Operations acknowledged by the CRM, by destination and type",
    ["destination", "type"],
)
DEAD_LETTERS = Counter("loke_sync_dead_letters_created", "Dead letters created", ["kind"])
PAGES = Counter("loke_sync_loke_pages", "LOKE pages applied, by kind (backfill, list)", ["kind"])


class StateCollector(Collector):
    """Gauges read from the database and the broker when /metrics is scraped."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._broker: redis.Redis | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, read now; one source being down never fails the scrape."""
        try:
            yield from self._from_database()
        except Exception:  # a scrape must never fail because one source is down
            log.exception("metrics: database gauges unavailable")
        yield from self._queue_depths()

    def _from_database(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        backlog = GaugeMetricFamily(
            "loke_sync_outbox_backlog", "Entities waiting for the CRM", labels=["destination"]
        )
        oldest = GaugeMetricFamily(
            "loke_sync_outbox_oldest_seconds",
            "Age of the oldest undelivered change, since it entered the delivery queue (not by "
            "LOKE's timestamp)",
            labels=["destination"],
        )
        dead = GaugeMetricFamily(
            "loke_sync_dead_letters_open", "Dead letters not replayed", labels=["destination"]
        )
        unreachable = GaugeMetricFamily(
            "loke_sync_destination_unreachable_seconds",
            "How long the destination's CRM has been unreachable (delivery paused)",
            labels=["destination"],
        )
        conflicts = GaugeMetricFamily(
            "loke_sync_delivery_conflicts_open",
            "Customers the CRM holds without their email (held by another contact, or invalid)",
            labels=["destination"],
        )
        inbox = GaugeMetricFamily("loke_sync_inbox_pending", "Stored events not yet applied")
        backfill = GaugeMetricFamily(
            "loke_sync_backfill_customers",
            "Customers read by the latest backfill",
            labels=["destination", "status"],
        )
        list_members = GaugeMetricFamily(
            "loke_sync_list_sync_members",
            "Members read by each list's latest resync",
            labels=["destination", "list", "status"],
        )
        with self._services.db.transaction() as session:
            for org_id, count, first in session.execute(
                select(OutboxEntry.org_id, func.count(), func.min(OutboxEntry.changed_at))
                .where(OutboxEntry.pending)
                .group_by(OutboxEntry.org_id)
            ):
                backlog.add_metric([org_id], count)
                oldest.add_metric([org_id], (now - first).total_seconds())
            for org_id, count in session.execute(
                select(DeadLetter.org_id, func.count())
                .where(DeadLetter.replayed_at.is_(None))
                .group_by(DeadLetter.org_id)
            ):
                dead.add_metric([org_id], count)
            for org_id, since in session.execute(
                select(DeliveryState.org_id, DeliveryState.unreachable_since).where(
                    DeliveryState.unreachable_since.is_not(None)
                )
            ):
                if since is not None:
                    unreachable.add_metric([org_id], (now - since).total_seconds())
            for org_id, count in session.execute(
                select(DeliveryConflict.org_id, func.count()).group_by(DeliveryConflict.org_id)
            ):
                conflicts.add_metric([org_id], count)
            inbox.add_metric(
                [], session.scalar(select(func.count()).where(InboxEvent.status == "pending")) or 0
            )
            latest = select(func.max(BackfillRun.id)).group_by(BackfillRun.org_id)
            for run in session.scalars(select(BackfillRun).where(BackfillRun.id.in_(latest))):
                backfill.add_metric([run.org_id, run.status], run.customers)
            latest_lists = select(func.max(ListSyncRun.id)).group_by(
                ListSyncRun.org_id, ListSyncRun.list_id
            )
            for lrun in session.scalars(
                select(ListSyncRun).where(ListSyncRun.id.in_(latest_lists))
            ):
                list_members.add_metric([lrun.org_id, lrun.list_id, lrun.status], lrun.members)
        yield from (backlog, oldest, dead, unreachable, conflicts, inbox, backfill, list_members)

    def _queue_depths(self) -> Iterator[GaugeMetricFamily]:
        url = self._services.settings.celery_broker_url or ""
        if not url.startswith(("redis://", "rediss://")):
            return  # the embedded broker has no cheap length to read
        if self._broker is None:
            self._broker = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        depth = GaugeMetricFamily(
            "loke_sync_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"]
        )
        try:
            for queue in QueueName:
                depth.add_metric([queue.value], self._broker.llen(queue.value))
        except redis.RedisError:
            log.warning("metrics: queue depths unavailable")
            return
        yield depth


def exposition(services: Services, state: StateCollector) -> tuple[bytes, str]:
    """This machine's process metrics (all processes in multiprocess mode) and shared gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)  # type: ignore[no-untyped-call]
    else:
        processes = REGISTRY
    shared = CollectorRegistry()
    shared.register(state)
    return generate_latest(processes) + generate_latest(shared), CONTENT_TYPE_LATEST


def process_registry() -> CollectorRegistry:
    """What a worker serves on WORKER_METRICS_PORT."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY
