"""The process entry for `celery -A workers.worker worker|beat`."""

from workers import metrics_dir

metrics_dir.ensure()  # before prometheus_client is imported: pool children count together

from app import create_app, logs  # noqa: E402 - must follow the line above
from app.config import load_settings  # noqa: E402

# Before Celery starts: even its start-up warnings come out as JSON lines.
logs.configure(load_settings().log_level)

flask_app = create_app()
celery = flask_app.extensions["celery"]
