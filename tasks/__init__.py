"""Thin Celery tasks over plain functions in app/: decode ids, call, decide retries."""
