#!/usr/bin/env bash
# `make demo`: the real DAG on the local stack — `airflow dags test user_automation`
# with 10,000 generated users and all three sinks — then each stage's summary
# and a few rows from Cassandra, PostgreSQL and the Parquet files; then the demo's
# sign-ups per nationality per minute (rtds aggregate, into PostgreSQL's
# signups_per_minute), a few of those windows, and reconcile's proof of them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COUNT=${DEMO_COUNT:-10000}
CARGO=${CARGO:-cargo}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rtds/target}

# The optimized build (profile `ship`) is the long pole on a fresh machine: overlap it
# with the stack's start and the Airflow install, as `make test` does.
mkdir -p .stack
$CARGO build --profile ship --bin rtds >.stack/demo-build.log 2>&1 && echo "$SECONDS" >.stack/demo-build.done &
build_pid=$!
scripts/stack.sh up
scripts/stack.sh install airflow
ready=$SECONDS
if ! wait $build_pid; then cat .stack/demo-build.log >&2; exit 1; fi
echo "[demo] stack and Airflow ready after ${ready}s, the ship build after $(cat .stack/demo-build.done)s"
# shellcheck source=scripts/stack/lib.sh
. scripts/stack/lib.sh
. scripts/stack/cassandra.sh
. scripts/stack/postgres.sh
. scripts/stack/airflow.sh
airflow_vars
eval "$(scripts/stack.sh env)"

step() { printf '\n== %s\n' "$*"; }
step "rtds check"
"$RTDS_BIN" check

demo_start=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
step "airflow dags test user_automation (count $COUNT, sinks cassandra, postgres, parquet)"
conf=$(printf '{"count": %d, "seed": %d, "source": "generate", "sinks": ["cassandra", "postgres", "parquet"]}' "$COUNT" "$RANDOM")
log="$STACK_DIR/demo-dag.log"
start=$SECONDS
airflow_dag_test user_automation "$conf" "$log" || exit 1
echo "DAG run succeeded in $((SECONDS - start))s; stage summaries:"
grep -o '{"stage":"[a-z]*".*}' "$log" | awk '!seen[$0]++'

step "Cassandra: spark_streams.created_users"
cassandra_cql "SELECT count(*) FROM spark_streams.created_users" | sed 's/^/rows: /'
cassandra_cql "SELECT id, first_name, last_name, post_code, email FROM spark_streams.created_users LIMIT 5"
step "PostgreSQL: public.created_users"
postgres_psql -c "SELECT count(*) AS rows FROM created_users" \
  -c "SELECT id, first_name, last_name, post_code, dob, loaded_at FROM created_users ORDER BY loaded_at DESC LIMIT 5"
step "Parquet: $RTDS_OUT/created_users"
"$RTDS_BIN" query --out "$RTDS_OUT" "SELECT count(*) AS rows FROM created_users"
"$RTDS_BIN" query --out "$RTDS_OUT" "SELECT id, first_name, last_name, post_code, email FROM created_users LIMIT 5"

step "rtds aggregate: sign-ups per nationality per minute of this demo (dags/sql/signups_per_minute.sql)"
summary=$("$RTDS_BIN" aggregate --sql dags/sql/signups_per_minute.sql --from-time "$demo_start" \
  --output-topic users_signups_per_minute --sink postgres --table signups_per_minute)
echo "$summary"
# A few of its windows, as the table a dashboard reads holds them.
postgres_psql -c "SELECT window_start, nat, signups, round(mean_age::numeric, 1) AS mean_age FROM signups_per_minute \
  ORDER BY window_start DESC, signups DESC, nat LIMIT 5"
step "rtds reconcile of the aggregate: its windows against the same SQL as one batch GROUP BY"
"$RTDS_BIN" reconcile "$summary" | tail -1

echo
echo "[demo] done in ${SECONDS}s"
