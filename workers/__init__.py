"""The Celery processes: the worker and beat entry, the beat schedule and its scheduler."""
