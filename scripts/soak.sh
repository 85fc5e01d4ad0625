#!/usr/bin/env bash
# `make soak`: the single-node pipeline at a steady rate for a long while (issue 39): ingest at
# SOAK_RATE records/s (1000) for SOAK_MINUTES (30), transform --follow, load --follow into
# Cassandra and PostgreSQL. It samples each stage's resident memory every SOAK_SAMPLE seconds
# (10), then reports per stage its peak RSS in the first window after warm-up and in the last
# (a window: SOAK_WINDOW minutes, 5; warm-up: the first window), the end-to-end p99 per window
# (ingest stamp to PostgreSQL's commit, per row: the table's ingested_at and loaded_at), and
# reconcile over every stage's summary. It fails if a stage's memory grew more than 10% from
# the first window to the last, or reconcile fails. The binary: SOAK_BIN (default the ship
# build, built here). The table goes to stdout and bench/results/soak-<time>.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rtds/target}
RATE=${SOAK_RATE:-1000}
MINUTES=${SOAK_MINUTES:-30}
WINDOW=${SOAK_WINDOW:-5}
SAMPLE=${SOAK_SAMPLE:-10}
if [ -z "${SOAK_BIN:-}" ]; then
  cargo build --profile ship --bin rtds --quiet
  SOAK_BIN=$CARGO_TARGET_DIR/ship/rtds
fi
scripts/stack.sh up kafka cassandra postgres
eval "$(scripts/stack.sh env)"
. scripts/stack/lib.sh
. scripts/stack/postgres.sh

RUN=$(date -u +%Y%m%dt%H%M%S)
WORK=$(mktemp -d)
tag="soak_$RUN"
raw=raw_$tag created=created_$tag dlq=dlq_$tag
common=(--dlq-topic "$dlq")
say() { echo "[soak] $*" >&2; }

# The three --follow stages, each a summary line on stdout when stopped.
"$SOAK_BIN" transform --follow --input-topic "$raw" --output-topic "$created" "${common[@]}" --group "t_$tag" \
  >"$WORK/transform.out" 2>"$WORK/transform.err" &
transform=$!
"$SOAK_BIN" load --follow --sink cassandra --input-topic "$created" "${common[@]}" --group "lc_$tag" \
  --keyspace "$tag" >"$WORK/load_cassandra.out" 2>"$WORK/load_cassandra.err" &
load_cassandra=$!
"$SOAK_BIN" load --follow --sink postgres --input-topic "$created" "${common[@]}" --group "lp_$tag" \
  --pg-schema "$tag" >"$WORK/load_postgres.out" 2>"$WORK/load_postgres.err" &
load_postgres=$!
stages=(transform="$transform" load_cassandra="$load_cassandra" load_postgres="$load_postgres")
sleep 10 # the stages joined their groups (a record sent before waits for them, as in a stream)

# ingest at the rate, in the background; memory sampled meanwhile: "seconds stage rss_kb" lines.
"$SOAK_BIN" ingest --source generate --rate "$RATE/s" --duration "${MINUTES}m" --seed 39 --topic "$raw" \
  >"$WORK/ingest.out" 2>"$WORK/ingest.err" &
ingest=$!
say "run $RUN: $RATE records/s for $MINUTES min (work: $WORK)"
start=$SECONDS
while kill -0 "$ingest" 2>/dev/null; do
  for s in "${stages[@]}"; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/${s#*=}/status" 2>/dev/null || echo 0)
    echo "$((SECONDS - start)) ${s%%=*} $rss" >>"$WORK/rss"
  done
  sleep "$SAMPLE"
done
wait "$ingest" || { say "ingest failed: $(tail -1 "$WORK/ingest.err")"; exit 1; }
n=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["out"])' "$WORK/ingest.out")
# The loads catch up, then every stage is stopped and prints its summary.
t=$SECONDS
until [ "$(postgres_psql -qAt -c "SELECT count(*) FROM $tag.created_users" 2>/dev/null || echo 0)" -ge "$n" ]; do
  [ $((SECONDS - t)) -lt 300 ] || { say "PostgreSQL holds fewer than $n rows after 300 s"; break; }
  sleep 2
done
sleep 5
for s in "${stages[@]}"; do kill -TERM "${s#*=}"; done
for s in "${stages[@]}"; do wait "${s#*=}" || say "${s%%=*} exited $?: $(tail -1 "$WORK/${s%%=*}.err")"; done

# p99 per window, from PostgreSQL's rows: loaded_at is the commit's time, ingested_at the stamp.
postgres_psql -qAt -F ' ' -c "SELECT floor(extract(epoch FROM ingested_at - min(ingested_at) OVER ()) / ($WINDOW * 60))::int
    AS w, extract(epoch FROM loaded_at - ingested_at) * 1000 FROM $tag.created_users" >"$WORK/latency"
last() { tail -1 "$1"; }
"$SOAK_BIN" reconcile "$(last "$WORK/ingest.out")" "$(last "$WORK/transform.out")" \
  "$(last "$WORK/load_cassandra.out")" "$(last "$WORK/load_postgres.out")" >"$WORK/reconcile.out" 2>"$WORK/reconcile.err" &&
  reconciled=0 || reconciled=$?
mkdir -p bench/results
python3 bench/report.py soak "$WORK" "$RUN" "$RATE" "$MINUTES" "$WINDOW" "$reconciled" | tee "bench/results/soak-$RUN.md"
