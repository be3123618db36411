# The farm's two commands: `make run` (everything, in the foreground) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The test farm runs beside a local one: its own state folder and ports.
TEST_ENV := BUILDFARM_STATE=.local/test BUILDFARM_REDIS_PORT=16379 BUILDFARM_REGISTRY_PORT=15000 \
	BUILDFARM_S3_PORT=19000
PYTEST_ARGS ?=

.PHONY: install run up down test fuzz lint format clean bench

install: $(STAMP)
	@deploy/local/services install

$(STAMP): pyproject.toml
	@command -v python3 >/dev/null || (apt-get update && apt-get install -y python3)
	@python3 -c 'import venv, ensurepip' 2>/dev/null || (apt-get update && apt-get install -y python3-venv)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

run: install
	deploy/local/farm run

up: install
	deploy/local/farm up

down:
	deploy/local/farm down

test: install
	@$(TEST_ENV) deploy/local/services up
	@eval "$$($(TEST_ENV) deploy/local/services env)" && $(TEST_ENV) deploy/local/base-image
	@set -o pipefail; status=0; \
	eval "$$($(TEST_ENV) deploy/local/services env)" && \
	  $(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	$(TEST_ENV) deploy/local/services down; \
	exit $$status

fuzz: install
	$(MAKE) test PYTEST_ARGS="tests/test_fuzz_openapi.py -s" FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-200}

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: down
	rm -rf .local $(VENV)

bench: up
	source .local/buildfarm.env && $(PY) -m bench.overhead --pairs $${PAIRS:-7}
