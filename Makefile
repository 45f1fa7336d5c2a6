# Tidings: `make run` serves the demo, `make test` runs every test, `make bench` measures,
# `make soak` runs the 10-minute soak.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench soak lint format services clean

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# Migrate the database (any revision, or tables made before migrations), then seed what is missing.
run: $(BIN)/.runtime
	$(BIN)/flask --app app db upgrade
	$(BIN)/flask --app app seed
	exec $(BIN)/gunicorn -c gunicorn.conf.py

# Tests drive Debian's Chromium and start a private PostgreSQL: install what is missing.
services:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null || missing="$$missing nginx"; \
	{ command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; } \
		|| missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing from Debian for the tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: $(BIN)/.dev services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PATH="$$PATH:$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)" $(BIN)/pytest

# The scenarios write bench/results/*.json; the report sums them up in bench/RESULTS.md.
bench: $(BIN)/.dev services
	PATH="$$PATH:$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)" $(BIN)/python -m bench
	$(BIN)/python -m bench.report

# 10 minutes of random cuts under writes (SOAK_SECONDS, SOAK_CLIENTS, SOAK_WRITES, SOAK_CUTS).
soak: $(BIN)/.dev
	$(BIN)/python -m tests.faults.soak

lint: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) instance test-artifacts .pytest_cache .ruff_cache
