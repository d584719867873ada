# One image for every process: web, worker, beat and release differ only by command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PORT=8000
# Where a container's processes (gunicorn's workers, a worker's pool) add up their metrics. It
# must start empty: compose mounts a tmpfs here, and gunicorn.conf.py removes the files of
# processes that are gone.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/loke-sync-metrics
# JSON even when a container is given a terminal (docker run -t): log collectors parse it.
ENV LOG_FORMAT=json
WORKDIR /srv/loke-crm-sync

# Dependencies first, pinned by the lock, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
RUN mkdir -p app workers tasks devtools \
    && touch app/__init__.py workers/__init__.py tasks/__init__.py devtools/__init__.py \
    && pip install -c requirements/constraints.txt ".[monitoring]" \
    && pip uninstall -y loke-crm-sync

COPY app app
COPY workers workers
COPY tasks tasks
COPY devtools devtools
COPY migrations migrations
# gunicorn.conf.py: `loke-sync web` runs gunicorn here, which reads it from its working
# directory (JSON logs, the shared metrics directory, the graceful timeout).
COPY alembic.ini gunicorn.conf.py ./
# Editable, so alembic.ini and migrations/ stay beside the code that finds them.
RUN pip install --no-deps -e . \
    && useradd --system --home-dir /srv/loke-crm-sync loke \
    && mkdir -p "$PROMETHEUS_MULTIPROC_DIR" \
    && chown -R loke /srv/loke-crm-sync "$PROMETHEUS_MULTIPROC_DIR"
USER loke

EXPOSE 8000
CMD ["loke-sync", "web"]
