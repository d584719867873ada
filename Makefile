# The handful of commands people type. Each target sets up its own virtualenv first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run demo test lint unit integration bench-ingest bench-pipeline bench-backfill bench-lists bench-hubspot lock clean

$(BIN)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[monitoring]" --group dev
	touch $@

## run: web + worker + beat on embedded defaults (or on DATABASE_URL / CELERY_BROKER_URL)
run: $(BIN)/.installed
	$(BIN)/loke-sync run

## demo: a simulated LOKE, the service and a demo CRM, connected (embedded defaults, no servers)
demo: $(BIN)/.installed
	$(BIN)/loke-sync demo

## test: lint, type-check, then every test (needs PostgreSQL and Redis on 127.0.0.1)
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/bandit -r app workers tasks -q

unit: $(BIN)/.installed
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(BIN)/.installed
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

bench-ingest: $(BIN)/.installed
	$(BIN)/python -m bench.ingest

bench-pipeline: $(BIN)/.installed
	$(BIN)/python -m bench.pipeline

# A real CRM answers a batch in 100-500 ms, LOKE a page in ~100 ms: the goals are measured so.
bench-backfill: $(BIN)/.installed
	$(BIN)/python -m bench.backfill --crm-latency 0.3

bench-lists: $(BIN)/.installed
	$(BIN)/python -m bench.lists --loke-latency 0.1

# HubSpot answers in 100-400 ms and allows 190 requests per rolling 10 s on paid tiers.
bench-hubspot: $(BIN)/.installed
	$(BIN)/python -m bench.backfill --destination hubspot --crm-latency 0.3

## bench-soak: 10 minutes of webhooks at half the ingest maximum, with backfills and list resyncs
.PHONY: bench-soak
bench-soak: $(BIN)/.installed
	$(BIN)/python -m bench.soak --plot docs/soak.png

## lock: re-pin every dependency after changing pyproject.toml
lock: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --upgrade -e ".[monitoring]" --group dev
	{ echo "# Pinned versions of every runtime and dev dependency. Regenerate: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable; } > requirements/constraints.txt

clean:
	rm -rf $(VENV) var artifacts .mypy_cache .ruff_cache .pytest_cache .hypothesis
