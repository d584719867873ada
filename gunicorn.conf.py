"""gunicorn reads this file from the working directory, in the master, before any worker.

Only from there: `loke-sync web` runs gunicorn in its own working directory, which the
Procfile's platforms and the image (WORKDIR, where the Dockerfile copies this file) set to the
project's folder.
"""

from workers import metrics_dir, stale_metrics

# Before prometheus_client is imported: workers share one directory, started without the
# files of processes that are gone (a restart's predecessors).
stale_metrics.remove_dead_processes_files(metrics_dir.ensure())

from app.core.logs import LOGGING  # noqa: E402 - must follow the lines above

logconfig_dict = LOGGING  # the same lines as every other process (text or JSON: app.core.logs)

# How long a stopping worker may finish its requests. The longest waits on one outbound call
# (LOKE_TIMEOUT_SECONDS 15 s; DELIVERY_TIMEOUT_SECONDS 20 s for a CRM's token check), and then
# the worker sends the kicks still wanted (FLUSH_AT_EXIT_SECONDS, 2 s: atexit in
# app/ingest/background_kicks.py). Compose's stop_grace_period for web waits for this.
graceful_timeout = 30
