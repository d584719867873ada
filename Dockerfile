# One image for every process: web, worker, beat and release differ only by command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PORT=8000
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
COPY alembic.ini ./
# Editable, so alembic.ini and migrations/ stay beside the code that finds them.
RUN pip install --no-deps -e . \
    && useradd --system --home-dir /srv/loke-crm-sync loke \
    && chown -R loke /srv/loke-crm-sync
USER loke

EXPOSE 8000
CMD ["loke-sync", "web"]
