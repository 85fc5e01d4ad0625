#!/usr/bin/env bash
# `make demo`: the whole pipeline on the local stack — 10,000 generated users
# through ingest, transform and the three loads — then what each store holds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RTDS=${RTDS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/rtds/target}/debug/rtds}
COUNT=${DEMO_COUNT:-10000}
OUT="$ROOT/.stack/demo-parquet"

scripts/stack.sh up
eval "$(scripts/stack.sh env)"
# shellcheck source=scripts/stack/lib.sh
. scripts/stack/lib.sh
. scripts/stack/cassandra.sh
. scripts/stack/postgres.sh

step() { printf '\n== %s\n' "$*"; }
step "rtds check"
"$RTDS" check
step "rtds ingest --source generate --count $COUNT"
"$RTDS" ingest --source generate --count "$COUNT" --seed "${DEMO_SEED:-$RANDOM}" 2>/dev/null
step "rtds transform"
"$RTDS" transform 2>/dev/null
for sink in cassandra postgres parquet; do
  step "rtds load --sink $sink"
  "$RTDS" load --sink "$sink" --out "$OUT" 2>/dev/null
done

step "Cassandra: spark_streams.created_users"
cassandra_cql "SELECT count(*) FROM spark_streams.created_users" | sed 's/^/rows: /'
cassandra_cql "SELECT id, first_name, last_name, post_code, email FROM spark_streams.created_users LIMIT 5"
step "PostgreSQL: public.created_users"
postgres_psql -c "SELECT count(*) AS rows FROM created_users" \
  -c "SELECT id, first_name, last_name, post_code, dob, loaded_at FROM created_users ORDER BY loaded_at DESC LIMIT 5"
step "Parquet: $OUT/created_users"
"${CARGO_TARGET_DIR:-$HOME/.cache/rtds/target}/debug/examples/parquet_head" "$OUT/created_users" 5
