"""Retention: what the service stops keeping once it is old (applied events' bodies, the events
themselves, replayed dead letters, finished runs), pruned by beat in small transactions."""
