"""Reading LOKE's paged customers: the resumable backfill and the scheduled reconciliation."""
