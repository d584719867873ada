"""What the service did, minute by minute, kept in the database for the dashboard's charts and
its recent-activity feed: counted per batch (never per webhook) and sampled once a minute."""
