"""Every task's stable name, in one place: app code sends by name, tasks/ registers them."""

EVENTS_DRAIN = "events.drain"
EVENTS_SWEEP = "events.sweep"
DELIVERY_FLUSH = "delivery.flush"
DELIVERY_SWEEP = "delivery.sweep"
