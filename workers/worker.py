"""The process entry for `celery -A workers.worker worker|beat`."""

from app import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
