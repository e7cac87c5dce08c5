# A menu of one-liners. `make run` serves on embedded SQLite; `make test` runs every test on SQLite;
# `make test-postgres` runs the same tests on the local PostgreSQL.

PG_URL ?= postgres://postgres@127.0.0.1:5432
PG_TEST_DB ?= careplan_test
NEXTEST := $(shell cargo nextest --version >/dev/null 2>&1 && echo "nextest run" || echo test)

.PHONY: run build release test test-postgres fuzz lint fmt openapi openapi-check deploy-check bench clean

run: ## build and serve on ./data/careplan.db (SQLite), http://127.0.0.1:8080/fhir, WITHOUT authorization
	@echo "make run: authorization is DISABLED (CAREPLAN_AUTH_DISABLED=true); local use only, never with real data" >&2
	CAREPLAN_AUTH_DISABLED=true cargo run --release --bin careplan -- serve

build:
	cargo build --workspace

release:
	cargo build --release --bin careplan

test: ## every test, on SQLite
	cargo $(NEXTEST) --workspace

test-postgres: ## the same tests on PostgreSQL (a fresh database, one schema per test)
	psql "$(PG_URL)/postgres" -qc "DROP DATABASE IF EXISTS $(PG_TEST_DB)" -c "CREATE DATABASE $(PG_TEST_DB)"
	TEST_DATABASE_URL="$(PG_URL)/$(PG_TEST_DB)" cargo $(NEXTEST) --workspace

FUZZ_CASES ?= 200000
FUZZ_SEED ?= $(shell date +%s)
fuzz: ## fuzz the JSON walkers, ingest, both patch formats and the search parser: FUZZ_CASES cases per target (the normal suite runs 300), seed FUZZ_SEED
	FUZZ_CASES=$(FUZZ_CASES) FUZZ_SEED=$(FUZZ_SEED) cargo $(NEXTEST) -p careplan-domain fuzz::

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

openapi: ## regenerate openapi/openapi.yaml from the code (a test fails while it is stale)
	cargo run -q --bin careplan -- openapi > openapi/openapi.yaml.tmp || { rm -f openapi/openapi.yaml.tmp; exit 1; }
	mv openapi/openapi.yaml.tmp openapi/openapi.yaml

openapi-check: ## lint the OpenAPI file, fuzz a live server with schemathesis, render /docs in Chromium
	scripts/openapi-check.sh

deploy-check: ## render the kustomize overlays, validate them against the Kubernetes schemas, checkov + hadolint
	scripts/deploy-check.sh

bench: ## load benchmark: throughput, p50/p99 and peak RSS per scenario, SQLite and PostgreSQL
	scripts/bench/run.sh

clean:
	cargo clean
	rm -rf data
