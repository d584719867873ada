"""`loke-sync`: the command line for people who run the service."""
