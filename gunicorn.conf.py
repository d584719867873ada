"""gunicorn reads this file from the working directory, in the master, before any worker."""

from workers import metrics_dir

metrics_dir.ensure()  # before prometheus_client is imported: workers share one directory

from app.core.logs import LOGGING  # noqa: E402 - must follow the line above

logconfig_dict = LOGGING  # JSON lines like every other process
