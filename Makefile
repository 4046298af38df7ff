# The two promises: `make run` and `make test`. Everything else is a helper of theirs.
SHELL := /bin/bash
UV := $(shell scripts/bootstrap.sh)
RUN := $(UV) run --frozen
INFRA_ENV = set -a && source <(scripts/infra.sh env) && set +a

.PHONY: run test setup lint unit integration infra-up infra-down infra-status bench-ingest clean

## run: set up, then start every role in one process on embedded services (http://127.0.0.1:8000)
run: setup
	$(RUN) iotmon up

## setup: install the locked dependencies
setup:
	$(UV) sync --frozen

## lint: ruff, formatting, mypy (strict) on src/
lint: setup
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench
	$(RUN) mypy src

## test: set up, start the real services, run every check and test
test: lint infra-up
	$(INFRA_ENV) && $(RUN) iotmon topics create && $(RUN) pytest -ra

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

clean:
	rm -rf var/tools .venv
