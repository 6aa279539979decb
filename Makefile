# The quick local check: lint, types, spelling and the SQLite tests without a browser.
# Needs neither PostgreSQL, Redis nor Chromium. The full run is .ci/run.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: check
check:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/typos
	env -u DATABASE_URL -u RATE_LIMIT_STORAGE_URL $(BIN)/pytest -q -n 2 -m "not browser"
