# The two promises: `make run` and `make test`. Everything else is a helper of theirs.
SHELL := /bin/bash
UV := $(shell scripts/bootstrap.sh)
RUN := $(UV) run --frozen
# make run: only what running needs (no test or lint tools); --inexact keeps a developer's
# tools in an existing .venv, a fresh clone gets none. `uv run --no-sync` then uses it as is
# (a plain `uv run` would sync the dev group back in).
RUN_ONLY := $(UV) run --frozen --no-sync
INFRA_ENV = set -a && source <(scripts/infra.sh env) && set +a

.PHONY: run test helm-prefetch setup setup-run lint dashboard dashboard-check unit integration infra-up infra-down infra-status bench-ingest bench-api bench-ws clean

## run: set up, build the dashboard, then start every role in one process on embedded services
## (dashboard and API at http://127.0.0.1:8000). Without Node.js the API still runs.
run: setup-run
	scripts/dashboard.sh build || echo "make run: continuing without the dashboard (API at /api)"
	$(RUN_ONLY) iotmon up

## dashboard: install the dashboard's locked dependencies and build it (dashboard/dist)
dashboard:
	scripts/dashboard.sh build

## dashboard-check: TypeScript, ESLint, Vitest
dashboard-check:
	scripts/dashboard.sh check

## setup: install the locked dependencies, with the test and lint tools (make test), and
## compile the statistics engine (pure Python where this machine cannot: README, native)
setup:
	$(UV) sync --frozen --group native
	$(RUN) --group native iotmon native build

## setup-run: install the locked dependencies that running needs (make run), and compile the
## statistics engine as setup does
setup-run:
	$(UV) sync --frozen --no-dev --inexact --group native
	$(RUN_ONLY) iotmon native build

## lint: ruff, formatting, mypy (strict) on src/, the import contracts (.importlinter)
lint: setup
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench
	$(RUN) mypy src
	$(RUN) lint-imports

## test: set up, start the real services, run every check and test (end-to-end in Chromium too)
test: helm-prefetch lint dashboard-check dashboard infra-up
	scripts/dashboard.sh browser
	scripts/helm.sh path  # Helm for tests/deploy: built once from the Go module proxy, then cached
	$(INFRA_ENV) && $(RUN) iotmon topics create && $(RUN) pytest -ra --durations=20

# helm-prefetch: a first Helm build (minutes) runs in the background while lint and the
# dashboard build go on; `scripts/helm.sh path` in `test` waits for it (a lock, one build at a time)
helm-prefetch:
	mkdir -p var && (scripts/helm.sh path >/dev/null 2>var/helm-build.log &)

unit: setup
	$(RUN) pytest -ra tests/unit

infra-up:
	scripts/infra.sh up

infra-down:
	scripts/infra.sh down

infra-status:
	scripts/infra.sh status

## bench-ingest: the ingestion benchmark on the real services (N=1,000,000)
bench-ingest: setup infra-up
	$(INFRA_ENV) && $(RUN) iotmon bench ingest --readings $${READINGS:-1000000}

## bench-api: wrk against the web role's read endpoints (100 connections)
bench-api: setup infra-up
	$(INFRA_ENV) && $(RUN) iotmon bench api --connections $${CONNECTIONS:-100}

## bench-ws: 1,000 Socket.IO clients on the five devices, events from the real pipeline
bench-ws: setup infra-up
	$(INFRA_ENV) && $(RUN) iotmon bench ws --clients $${CLIENTS:-1000}

clean:
	rm -rf var/tools .venv
