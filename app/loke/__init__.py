"""Talking to LOKE's API: tokens, retries, subscriptions."""
