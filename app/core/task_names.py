"""Every task's stable name, in one place: app code sends by name, tasks/ registers them."""

EVENTS_DRAIN = "events.drain"
EVENTS_SWEEP = "events.sweep"
DELIVERY_FLUSH = "delivery.flush"
DELIVERY_SWEEP = "delivery.sweep"
# On the delivery queue: a few rows a minute, and on time while a backfill fills the others.
ACTIVITY_SAMPLE = "delivery.sample_activity"
BACKFILL_PAGE = "backfill.page"
BACKFILL_SWEEP = "backfill.sweep"
RECONCILE_DUE = "backfill.reconcile_due"
RECONCILE_ORG = "backfill.reconcile"
CHECK_SUBSCRIPTIONS = "orgs.check_subscriptions"
LISTS_READ = "lists.read"
LISTS_STAGE = "lists.stage"
LISTS_SWEEP = "lists.sweep"
LISTS_DUE = "lists.dispatch_due"
# On the backfill queue, by its prefix: slow housekeeping, never ahead of live events.
RETENTION_PRUNE = "backfill.prune_retention"
