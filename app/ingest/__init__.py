"""Webhooks after the receiver: the inbox they are stored in, and applying them to the mirror."""
