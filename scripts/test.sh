#!/usr/bin/env bash
# `make test`: build while the stack starts, lint, run every test (Rust unit and
# integration tests, DAG tests), and stop the services this run started, even
# when a test fails.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}

started=()
for s in $(scripts/stack.sh services); do
  scripts/stack.sh status "$s" >/dev/null 2>&1 || started+=("$s")
done
cleanup() {
  local rc=$?
  if [ ${#started[@]} -gt 0 ]; then scripts/stack.sh down "${started[@]}" || true; fi
  exit $rc
}
trap cleanup EXIT INT TERM

# The build is the long pole on a fresh machine: overlap it with the stack's start.
mkdir -p "$ROOT/.stack"
$CARGO test --features fault-injection --no-run --quiet >"$ROOT/.stack/build.log" 2>&1 &
build_pid=$!
scripts/stack.sh up
scripts/stack.sh install airflow
# The UI test drives Debian's Chromium with playwright-core (pinned in tests/ui/package.json).
(
  . scripts/stack/lib.sh
  apt_ensure chromium
  command -v npm >/dev/null || apt_ensure nodejs npm
  if ! cmp -s tests/ui/package.json .stack/ui/package.json || [ ! -d .stack/ui/node_modules/playwright-core ]; then
    mkdir -p .stack/ui && cp tests/ui/package.json .stack/ui/
    npm install --prefix .stack/ui --no-audit --no-fund --loglevel=error >&2
  fi
)
if ! wait $build_pid; then cat "$ROOT/.stack/build.log" >&2; exit 1; fi

eval "$(scripts/stack.sh env)"

$CARGO fmt --check
$CARGO clippy --all-targets --features fault-injection --quiet -- -D warnings
$CARGO test --features fault-injection

# The DAGs: lint, then pytest (DagBag shape tests and real `airflow dags test` runs).
venv="$ROOT/.stack/airflow/venv/bin"
"$venv/ruff" check dags tests/dags airflow/plugins bench
"$venv/ruff" format --check dags tests/dags airflow/plugins bench
(cd tests/dags && "$venv/pytest" -q)
