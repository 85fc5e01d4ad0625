# rtds — see README.md. `make demo` runs the pipeline end to end; `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# Builds live outside the clone so CI and later sessions reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/rtds/target
CARGO ?= cargo

.PHONY: all deps build ship lint test demo airflow stack-up stack-down stack-status faults soak bench clean

all: build

deps: ## install what the build needs (Debian packages, Rust components)
	@scripts/deps.sh

build: deps ## the debug build the tests run
	$(CARGO) build

ship: deps ## the optimized binary Airflow, the demo and the compose image run (profile `ship`, Cargo.toml)
	$(CARGO) build --profile ship --bin rtds

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --features fault-injection -- -D warnings
	scripts/stack.sh install airflow
	.stack/airflow/venv/bin/ruff check dags tests/dags airflow/plugins bench
	.stack/airflow/venv/bin/ruff format --check dags tests/dags airflow/plugins bench

stack-up:
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down

stack-status:
	scripts/stack.sh status

test: deps ## start the stack (and stop what it started), lint, every test
	scripts/test.sh

demo: deps ## the pipeline end to end on the local stack (the ship build), then what each store holds
	scripts/demo.sh

airflow: ship stack-up ## the Airflow UI on http://127.0.0.1:8080 with the rtds DAGs
	scripts/stack.sh up airflow
	@echo "Airflow UI: http://127.0.0.1:8080  user: admin  password: see .stack/airflow/home/simple_auth_manager_passwords.json.generated"

faults: deps ## the fault-injection suite (stops and restarts Kafka, Cassandra, PostgreSQL), then its figures
	scripts/faults.sh

soak: deps ## the pipeline at 1,000 records/s for 30 min (SOAK_RATE, SOAK_MINUTES): memory, p99 per 5 min, reconcile
	scripts/soak.sh

bench: deps ## criterion + every stage against its bare baseline (release build, 1M records)
	bench/run.sh

clean:
	scripts/stack.sh down || true
	rm -rf .stack
