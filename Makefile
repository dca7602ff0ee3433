# Two commands matter: `make run` (serve the demo) and `make test` (the whole suite).
# Both need nothing but Python 3.11+; DATABASE_URL / REDIS_URL switch to PostgreSQL / Redis.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: run serve test faults lint fuzz format security bandit deploy-check audit worker beat migrate demo schema clean lock smoke simulate openapi-lint

# Installs come from the lock files only, every package checked against its pinned hash.
PIP_INSTALL = $(PY) -m pip install --quiet --require-hashes

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt $(VENV)/bin/activate
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@

# Compile requirements*.in into the hashed lock files. Pins already in a lock are kept;
# UPGRADE=name upgrades that package (and what it needs), UPGRADE=all everything. Only the
# public index is asked (this machine's pip configuration is set aside), so the lock holds
# the hashes every installer sees.
LOCK_ARGS = --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	$(if $(filter all,$(UPGRADE)),--upgrade,$(if $(UPGRADE),--upgrade-package $(UPGRADE)))
lock: $(VENV)/.installed-dev
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= $(VENV)/bin/pip-compile $(LOCK_ARGS) -o requirements.txt requirements.in
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= $(VENV)/bin/pip-compile $(LOCK_ARGS) -o requirements-dev.txt requirements-dev.in

migrate: $(VENV)/.installed
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py populate_mock_data

run: demo
	$(PY) manage.py runserver $(HOST):$(PORT)

# The production stack without Docker: gunicorn, a Celery worker and beat (Procfile, honcho),
# against the PostgreSQL and Redis named by DATABASE_URL and REDIS_URL.
serve: $(VENV)/.installed-dev
	@test -n "$$DATABASE_URL" -a -n "$$REDIS_URL" || { \
		echo "make serve runs gunicorn, a Celery worker and beat: set DATABASE_URL and REDIS_URL (see README)"; exit 2; }
	$(PY) manage.py migrate --noinput
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" HOST=$(HOST) $(VENV)/bin/honcho start --port $(PORT)

test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

# Only the fault-injection tests (docs/FAULTS.md): a private Redis, a proxy in front of
# PostgreSQL, gunicorn and workers as processes. `make test` runs them too.
faults: $(VENV)/.installed-dev
	$(PY) -m pytest -m faults $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

# The schema as integrators get it, linted by Redocly's recommended rules (redocly.yaml turns
# off only no-path-trailing-slash: Django's URLs end in "/"): any error or warning fails.
# @redocly/cli is pinned by tools/redocly/package-lock.json and installed from it (npm ci)
# when node_modules is missing or older than the lock.
REDOCLY_DIR = tools/redocly
$(REDOCLY_DIR)/node_modules/.installed: $(REDOCLY_DIR)/package-lock.json $(REDOCLY_DIR)/package.json
	npm ci --prefix $(REDOCLY_DIR) --no-audit --no-fund --ignore-scripts
	touch $@

openapi-lint: SHELL := /bin/bash
openapi-lint: .SHELLFLAGS := -o pipefail -ec
openapi-lint: $(VENV)/.installed-dev $(REDOCLY_DIR)/node_modules/.installed
	@dir="$$(mktemp -d)"; trap 'rm -rf "$$dir"' EXIT; \
	$(PY) manage.py spectacular --file "$$dir/schema.yaml"; \
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
	$(REDOCLY_DIR)/node_modules/.bin/redocly lint --config redocly.yaml --max-problems 500 "$$dir/schema.yaml" 2>&1 \
		| tee "$$dir/lint.out"; \
	if grep -qE "You have [0-9]+ warnings?" "$$dir/lint.out"; then \
		echo "openapi-lint: warnings fail too (0 errors and 0 warnings required)"; exit 1; fi

# Security scans; each fails on any finding. bandit over the code (settings in pyproject.toml),
# `check --deploy` under production settings, pip-audit where a vulnerability service answers.
security: bandit deploy-check audit

# The code with every rule, then the tests without the rules that forbid what tests do on
# purpose (see pyproject.toml). bandit also warns "nosec encountered ..., but no failed test"
# for every other node of an excused line (PyCQA/bandit#1041): that noise is dropped.
TEST_DIRS = $(shell find . -path './.venv*' -prune -o -type d -name tests -print | sort)
BANDIT_NOISE = nosec encountered (B[0-9]*), but no failed test
bandit: SHELL := /bin/bash
bandit: .SHELLFLAGS := -o pipefail -c
bandit: $(VENV)/.installed-dev
	$(VENV)/bin/bandit -c pyproject.toml -q -r . -x /tests/,./conftest.py 2>&1 | { grep -v "$(BANDIT_NOISE)" || true; }
	$(VENV)/bin/bandit -c pyproject.toml -q -s B101,B105,B106,B107,B311 -r $(TEST_DIRS) conftest.py 2>&1 \
		| { grep -v "$(BANDIT_NOISE)" || true; }
	@echo "bandit: no issues"

# Production settings (DEBUG=False) with throw-away secrets made here: settings refuse to start
# without real-looking ones.
deploy-check: $(VENV)/.installed
	DEBUG=False ALLOWED_HOSTS=bnpl.example.com \
	SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(64))')" \
	FIELD_ENCRYPTION_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(32))')" \
		$(PY) manage.py check --deploy --fail-level WARNING

audit: $(VENV)/.installed-dev
	$(PY) .ci/audit_dependencies.py

# Schema fuzzing: schemathesis against the service's own /api/schema/, served by gunicorn on
# PostgreSQL and Redis databases of its own (FUZZ_DATABASE_URL, FUZZ_REDIS_URL), as an operator,
# a merchant, a customer and anonymously; fails on any finding. FUZZ_ARGS="-n 50 --seed 7" to vary.
fuzz: $(VENV)/.installed-dev
	$(PY) scripts/fuzz_api.py $(FUZZ_ARGS)

# The money simulation (scripts/simulate.py, DESIGN §9): threads race every money operation
# (offers, confirmations, captures, voids and expiry too) on a few plans at a time, on a
# PostgreSQL database of its own (SIMULATE_DATABASE_URL); every invariant must hold after
# each round. MINUTES=10 runs ten minutes; SEED=n replays a seed.
MINUTES ?= 1
simulate: $(VENV)/.installed-dev
	$(PY) scripts/simulate.py --minutes $(MINUTES) $(if $(SEED),--seed $(SEED)) $(SIMULATE_ARGS)

# The production install, proven: a virtualenv made from the runtime lock alone (as the
# Dockerfile makes it), then gunicorn, a worker and beat from it driven end to end over HTTP
# against PostgreSQL and Redis (scripts/prod_smoke.py; SMOKE_DATABASE_URL, SMOKE_REDIS_URL).
PROD_VENV ?= .venv-prod
$(PROD_VENV)/.installed: requirements.txt
	rm -rf $(PROD_VENV)
	$(PYTHON) -m venv $(PROD_VENV)
	$(PROD_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements.txt
	touch $@

smoke: $(PROD_VENV)/.installed
	$(PROD_VENV)/bin/python scripts/prod_smoke.py $(SMOKE_ARGS)

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

worker: $(VENV)/.installed
	$(VENV)/bin/celery -A config worker --loglevel INFO

beat: migrate
	$(VENV)/bin/celery -A config beat --loglevel INFO

clean:
	rm -rf $(VENV) $(PROD_VENV) db.sqlite3 staticfiles
