# Usufruct: `make run` (embedded, no external service) and `make test` (PostgreSQL + broker,
# which scripts/ensure-services starts, and Chromium, which it installs).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export DATABASE_URL_TEST ?= postgres://postgres@127.0.0.1:5432/usufruct
export CELERY_BROKER_URL_TEST ?= redis://127.0.0.1:6379/15

.PHONY: install run test lint fmt bench clean

# The pure modules (no Django): what a node imports and what the offline verifier is.
MYPY_PATHS := protocol audit compute/algorithms compute/node marketplace/money.py marketplace/billing.py

$(STAMP): requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  Usufruct is starting at http://127.0.0.1:$${USUFRUCT_PORT:-8000}/  (Ctrl-C stops everything)"
	@echo "  Log in as bank / acme / taxco / regulator / admin, password usufruct-demo"
	@echo "  (another port: USUFRUCT_PORT=8080 make run)"
	@echo ""
	@# honcho stops every process on Ctrl-C and exits 130: that is the normal way to stop, not an error.
	@$(BIN)/honcho start -f Procfile; status=$$?; \
		if [ $$status -eq 130 ] || [ $$status -eq 0 ]; then echo "Usufruct stopped."; else exit $$status; fi

# ensure-services starts PostgreSQL and the broker if they are installed and stopped and
# installs Chromium where it can; otherwise it stops here with one line saying what is missing.
test: $(STAMP)
	@PYTHON=$(BIN)/python bash scripts/ensure-services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy $(MYPY_PATHS)
	DATABASE_URL=$(DATABASE_URL_TEST) CELERY_BROKER_URL=$(CELERY_BROKER_URL_TEST) USUFRUCT_VAR_DIR=$(CURDIR)/var/test \
		$(BIN)/python -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy $(MYPY_PATHS)

# The quick benchmarks; ledger_proofs.py and ledger_verify.py build a 1M-entry ledger first
# (see BENCHMARKS.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/stats_job_latency.py
	$(BIN)/python benchmarks/ledger_writer.py
	$(BIN)/python benchmarks/hub_replies.py

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var
