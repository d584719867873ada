"""The HTTP doors: the LOKE webhook receiver, the admin API, health checks."""
