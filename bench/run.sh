#!/usr/bin/env bash
# `make bench`: criterion micro-benchmarks, then each stage against its bare
# baseline in one run on this machine (release build, local stack), 1,000,000
# records by default. Writes bench/results/<run>.json and .md (and latest.md).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/stack/lib.sh
. scripts/stack/lib.sh
. scripts/stack/kafka.sh
. scripts/stack/cassandra.sh
. scripts/stack/postgres.sh
apt_ensure time python3

N=${BENCH_COUNT:-1000000}
CONCURRENCY=${BENCH_CONCURRENCY:-64}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/rtds/target}
REL="$TARGET/release"
RUN=$(date -u +%Y%m%dt%H%M%S)
WORK="$STACK_DIR/bench-$RUN"
RESULTS="$ROOT/bench/results/$RUN.jsonl"
mkdir -p "$WORK" "$ROOT/bench/results"
: >"$RESULTS"

say "building release binaries"
cargo build --release --quiet --bins --examples
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

# measure NAME BASELINE_OF CMD...: run CMD under /usr/bin/time; record its JSON
# summary (last stdout line), wall and CPU seconds, and peak RSS.
measure() {
  local name=$1 baseline_of=$2
  shift 2
  say "bench: $name"
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" \
    || { tail -n 20 "$WORK/$name.err" >&2; die "bench step $name failed"; }
  python3 - "$name" "$baseline_of" "$WORK/$name.out" "$WORK/$name.time" >>"$RESULTS" <<'PY'
import json, sys
name, baseline_of, out, timing = sys.argv[1:5]
lines = [l for l in open(out).read().splitlines() if l.startswith("{")]
summary = json.loads(lines[-1]) if lines else {}
wall, user, sys_, rss_kb = open(timing).read().split()[-4:]
print(json.dumps({"name": name, "baseline_of": baseline_of or None, "summary": summary, "wall_s": float(wall),
                  "cpu_s": float(user) + float(sys_), "peak_rss_mb": int(rss_kb) / 1024}))
PY
}

topic() { kafka_cli org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --create --if-not-exists \
  --topic "$1" --partitions 3 --replication-factor 1 >/dev/null; }

# 1. ingest against a bare rdkafka producer of the same payloads
measure ingest "" "$REL/rtds" ingest --source generate --count "$N" --seed 1 --topic "raw_$RUN"
topic "bareraw_$RUN"
measure bare_producer ingest "$REL/examples/bare_producer" 127.0.0.1:9092 "bareraw_$RUN" "$N" 1

# 2. transform against a bare consume-and-produce passthrough
measure transform "" "$REL/rtds" transform --input-topic "raw_$RUN" --output-topic "created_$RUN" \
  --dlq-topic "dlq_$RUN" --group "t_$RUN"
topic "pass_$RUN"
measure bare_passthrough transform "$REL/examples/bare_passthrough" 127.0.0.1:9092 "raw_$RUN" "pass_$RUN" "p_$RUN"

# 3. loads: Cassandra against a bare scylla-driver loop, PostgreSQL against psql \copy, Parquet
measure load_cassandra "" "$REL/rtds" load --sink cassandra --input-topic "created_$RUN" --group "lc_$RUN" \
  --keyspace "bench_rtds_$RUN" --concurrency "$CONCURRENCY"
measure bare_cassandra load_cassandra "$REL/examples/bare_cassandra" 127.0.0.1:9092 "created_$RUN" "bc_$RUN" \
  127.0.0.1:9042 "bench_bare_$RUN" "$CONCURRENCY"
measure load_postgres "" "$REL/rtds" load --sink postgres --input-topic "created_$RUN" --group "lp_$RUN" \
  --pg-schema "bench_rtds_$RUN"
say "bench: exporting the rows to CSV for psql \\copy"
kafka_cli org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server 127.0.0.1:9092 --topic "created_$RUN" \
  --from-beginning --max-messages "$N" --timeout-ms 60000 2>/dev/null >"$WORK/rows.jsonl"
python3 - "$WORK/rows.jsonl" "$WORK/rows.csv" <<'PY'
import csv, json, sys
cols = ["id","first_name","last_name","gender","address","post_code","email","username","dob","registered_date","phone","picture"]
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    for line in open(sys.argv[1]):
        r = json.loads(line)
        w.writerow([r.get(c) for c in cols])
PY
postgres_psql -q -c "CREATE SCHEMA bench_copy_$RUN; CREATE TABLE bench_copy_$RUN.created_users (LIKE bench_rtds_$RUN.created_users INCLUDING ALL)"
measure psql_copy load_postgres bash -c "PGPASSWORD=\$(cat '$STACK_DIR/postgres/password') psql -h 127.0.0.1 -p 5433 -U rtds -d rtds -q -c \"\\copy bench_copy_$RUN.created_users (id,first_name,last_name,gender,address,post_code,email,username,dob,registered_date,phone,picture) FROM '$WORK/rows.csv' CSV\" && echo '{\"stage\":\"psql_copy\",\"in\":$N}'"
measure load_parquet "" "$REL/rtds" load --sink parquet --input-topic "created_$RUN" --group "lq_$RUN" --out "$WORK/parquet"

# 4. criterion: the generator alone, and the in-process transform against arrow-json decoding alone
say "bench: criterion"
cargo bench --quiet --bench generator --bench transform -- --noplot >"$WORK/criterion.txt" 2>&1 || tail -n 30 "$WORK/criterion.txt" >&2

python3 bench/report.py "$RESULTS" "$TARGET/criterion" "$N" >"$ROOT/bench/results/$RUN.md"
cp "$ROOT/bench/results/$RUN.md" "$ROOT/bench/results/latest.md"
python3 -c "import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])], indent=1))" "$RESULTS" >"${RESULTS%.jsonl}.json"
rm -f "$RESULTS"
cat "$ROOT/bench/results/$RUN.md"
say "results: bench/results/$RUN.json and .md; scratch data in $WORK"
