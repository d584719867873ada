"""The Celery side: the app bound to Flask, the closed set of queues, routing and beat."""
