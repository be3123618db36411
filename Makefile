# The farm's two commands: `make run` (everything, in the foreground) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
# The interpreter the venv is made from (README "Python"): e.g. `make install PYTHON=python3.12`.
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The test farm runs beside a local one: its own state folder and ports.
TEST_ENV := BUILDFARM_STATE=.local/test BUILDFARM_REDIS_PORT=16379 BUILDFARM_REGISTRY_PORT=15000 \
	BUILDFARM_S3_PORT=19000
PYTEST_ARGS ?=
# pytest processes the suite runs in, each on services of its own (deploy/local/test).
TEST_SHARDS ?= 2

.PHONY: install run up down test fuzz lint format clean bench

install: $(STAMP)
	@deploy/local/services install

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || (apt-get update && apt-get install -y python3)
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || (apt-get update && apt-get install -y python3-venv)
	$(PYTHON) -m venv $(VENV)
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
	@command -v chromium >/dev/null || (apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-dejavu-core)
	@$(TEST_ENV) TEST_SHARDS=$(TEST_SHARDS) VENV=$(VENV) deploy/local/test $(PYTEST_ARGS)

fuzz: install
	$(MAKE) test TEST_SHARDS=1 PYTEST_ARGS="tests/test_fuzz_openapi.py -s" FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-200}

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: down
	rm -rf .local $(VENV)

# Benchmarks run on services of their own, beside a `make up` farm and the tests.
BENCH_ENV := BUILDFARM_STATE=.local/bench BUILDFARM_REDIS_PORT=36379 BUILDFARM_REGISTRY_PORT=35000 \
	BUILDFARM_S3_PORT=39000

bench: install
	@command -v wrk >/dev/null && command -v gcc >/dev/null && test -e /usr/lib/x86_64-linux-gnu/libc.a || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk gcc libc6-dev)
	@# Every run starts from an empty Redis of its own: runs stay comparable.
	@$(BENCH_ENV) deploy/local/services down >/dev/null && rm -rf .local/bench/redis
	@$(BENCH_ENV) deploy/local/services up
	@eval "$$($(BENCH_ENV) deploy/local/services env)" && $(BENCH_ENV) deploy/local/base-image
	@status=0; eval "$$($(BENCH_ENV) deploy/local/services env)" && \
	  $(BENCH_ENV) $(PY) -m bench $(if $(QUICK),--quick,--write) || status=$$?; \
	$(BENCH_ENV) deploy/local/services down; \
	exit $$status
