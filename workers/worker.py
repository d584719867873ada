"""The process entry for `celery -A workers.worker worker|beat` (what `loke-sync worker` and
`loke-sync beat` run)."""

from workers import metrics_dir

metrics_dir.ensure()  # before prometheus_client is imported: pool children count together

from app.core import logs  # noqa: E402 - must follow the line above
from app.core.config import load_settings  # noqa: E402
from app.factory import create_app  # noqa: E402
from workers.celery_app import configure  # noqa: E402

settings = load_settings()
# Before Celery starts: even its start-up warnings come out as log lines.
logs.configure(settings.log_level)

flask_app = create_app(settings)
celery = flask_app.extensions["celery"]
configure(celery, settings)
