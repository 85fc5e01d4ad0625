#!/usr/bin/env bash
# `make bench`: criterion micro-benchmarks, then each stage against its bare
# baseline in one run on this machine (release build, local stack), 1,000,000
# records by default; then the real-time path (fixed ingest rates, end-to-end
# latency) and a user_automation DAG run. Writes bench/results/latest.json, .md
# and .png (git keeps only the latest run).
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
# The Makefile's target directory, also when this script is run by hand (else cargo builds
# release from scratch into ./target).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rtds/target}
TARGET=$CARGO_TARGET_DIR
# BENCH_BIN_DIR: bench the binaries already built there (e.g. the ship build users run,
# $CARGO_TARGET_DIR/ship) instead of building release ones; the steps that need the bare
# baselines need them there too.
REL=${BENCH_BIN_DIR:-$TARGET/release}
RUN=$(date -u +%Y%m%dt%H%M%S)
COMMIT=$(git rev-parse HEAD)
WORK="$STACK_DIR/bench-$RUN"
# Each step's figures, as the run goes; the report replaces bench/results/latest.*
# (git keeps only the latest run: the earlier ones are in its history).
RESULTS="$WORK/results.jsonl"
mkdir -p "$WORK" "$ROOT/bench/results"
: >"$RESULTS"

if [ -z "${BENCH_BIN_DIR:-}" ]; then
  say "building release binaries"
  cargo build --release --quiet --bins --examples
fi
[ -x "$REL/rtds" ] || die "bench: no rtds binary in $REL"
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

# record NAME BASELINE_OF: add NAME's JSON summary (last JSON line of $WORK/NAME.out),
# wall and CPU seconds and peak RSS ($WORK/NAME.time, from /usr/bin/time) to the results.
record() {
  python3 bench/report.py record "$1" "$2" "$WORK/$1.out" "$WORK/$1.time" >>"$RESULTS"
}

# timed NAME CMD...: CMD under /usr/bin/time, output in $WORK/NAME.{out,err,time}.
timed() {
  local name=$1
  shift
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
}

# measure NAME BASELINE_OF CMD...: run CMD timed, then record it.
measure() {
  local name=$1 baseline_of=$2
  shift 2
  say "bench: $name"
  timed "$name" "$@" || { tail -n 20 "$WORK/$name.err" >&2; die "bench step $name failed"; }
  record "$name" "$baseline_of"
}

# topic NAME [PARTITIONS]: 3 partitions unless told.
topic() { kafka_cli org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --create --if-not-exists \
  --topic "$1" --partitions "${2:-3}" --replication-factor 1 >/dev/null; }

# drop_data PATTERN: drop this run's keyspaces, schemas and topics named like PATTERN (a regex
# over names ending in _$RUN), so that one step's data (compactions, vacuum) does not slow the
# next, and repeated runs do not fill the disk. The 1M-record scratch files go with their step.
drop_data() {
  local name
  for name in $(cassandra_cql "SELECT keyspace_name FROM system_schema.keyspaces" | grep -E "^$1_$RUN\$"); do
    cassandra_cql "DROP KEYSPACE $name" >/dev/null
  done
  for name in $(postgres_psql -qAtc "SELECT nspname FROM pg_namespace" | grep -E "^$1_$RUN\$"); do
    postgres_psql -qc "DROP SCHEMA $name CASCADE" >/dev/null 2>&1
  done
  kafka_cli org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --delete \
    --if-exists --topic "$1_$RUN" >/dev/null 2>&1 || true
}

# Each rtds step and its baseline run in A-B-B-A order (the second runs are named *_2 and
# report.py takes the mean of each side), so that neither side gains from running second on a
# stack that is still warming up (one run on a fresh stack, rtds first: ingest, Cassandra and
# PostgreSQL at 71% of their baselines; on a stack up for hours: 102-125%).

# 1. ingest against a bare rdkafka producer of the same payloads
bench_ingest() {
  measure ingest "" "$REL/rtds" ingest --source generate --count "$N" --seed 1 --topic "raw_$RUN"
  topic "bareraw_$RUN"
  measure bare_producer ingest "$REL/examples/bare_producer" 127.0.0.1:9092 "bareraw_$RUN" "$N" 1
  topic "bareraw2_$RUN"
  measure bare_producer_2 ingest_2 "$REL/examples/bare_producer" 127.0.0.1:9092 "bareraw2_$RUN" "$N" 1
  measure ingest_2 "" "$REL/rtds" ingest --source generate --count "$N" --seed 1 --topic "raw2_$RUN"
  drop_data '(bareraw|bareraw2|raw2)'
}

# 2. transform against a bare consume-and-produce of the same bytes (the clean rows the transform wrote)
bench_transform() {
  measure transform "" "$REL/rtds" transform --input-topic "raw_$RUN" --output-topic "created_$RUN" \
    --dlq-topic "dlq_$RUN" --group "t_$RUN"
  topic "pass_$RUN"
  measure bare_passthrough transform "$REL/examples/bare_passthrough" 127.0.0.1:9092 "raw_$RUN" "pass_$RUN" "p_$RUN" "created_$RUN"
  topic "pass2_$RUN"
  measure bare_passthrough_2 transform_2 "$REL/examples/bare_passthrough" 127.0.0.1:9092 "raw_$RUN" "pass2_$RUN" "p2_$RUN" "created_$RUN"
  measure transform_2 "" "$REL/rtds" transform --input-topic "raw_$RUN" --output-topic "created2_$RUN" \
    --dlq-topic "dlq_$RUN" --group "t2_$RUN"
  # The transform's Kafka work alone, each side apart (issue 19's floor): reading the raw
  # topic, and producing the clean rows the transform wrote (read into memory first).
  local f=$REL/examples/kafka_floor
  measure floor_consume "" "$f" consume 127.0.0.1:9092 "raw_$RUN" "fc_$RUN"
  topic "floor_$RUN"
  measure floor_produce "" "$f" produce 127.0.0.1:9092 "created_$RUN" "floor_$RUN"
  topic "floor2_$RUN"
  measure floor_produce_2 "" "$f" produce 127.0.0.1:9092 "created_$RUN" "floor2_$RUN"
  measure floor_consume_2 "" "$f" consume 127.0.0.1:9092 "raw_$RUN" "fc2_$RUN"
  drop_data '(pass|pass2|created2|floor|floor2)'
}

# 2b. the transform with --exactly-once over the same input (its at-least-once runs are above),
# at the default commit cadence and at BENCH_EOS_EVERY's (report.py: the ratio and the table).
bench_eos() {
  measure transform_eos "" "$REL/rtds" transform --exactly-once --input-topic "raw_$RUN" --output-topic "eos_$RUN" \
    --dlq-topic "dlq_$RUN" --group "te_$RUN"
  local every
  for every in ${BENCH_EOS_EVERY:-10ms 1s}; do
    measure "transform_eos_every_$every" "" "$REL/rtds" transform --exactly-once --transaction-every "$every" \
      --input-topic "raw_$RUN" --output-topic "eos${every}_$RUN" --dlq-topic "dlq_$RUN" --group "te${every}_$RUN"
    drop_data "eos${every}"
  done
  drop_data 'eos'
}

# 2c. Avro against JSON on the same users (issue 36): the ingest of the same seed in Avro, the
# transform with Avro in and out against JSON in and out, and the Parquet load (the sink that is
# CPU alone) of either's rows, each pair A-B-B-A; then each rows topic read once for its bytes
# a record (the raw topics' bytes are in the ingests' summaries).
bench_avro() {
  measure ingest_avro "" "$REL/rtds" ingest --format avro --source generate --count "$N" --seed 1 --topic "araw_$RUN"
  local t=("$REL/rtds" transform --dlq-topic "dlq_$RUN") l=("$REL/rtds" load --sink parquet)
  measure transform_json transform_avro "${t[@]}" --input-topic "raw_$RUN" --output-topic "jrows_$RUN" --group "tj_$RUN"
  measure transform_avro "" "${t[@]}" --input-topic "araw_$RUN" --output-topic "arows_$RUN" --group "ta_$RUN" --output-format avro
  measure transform_avro_2 "" "${t[@]}" --input-topic "araw_$RUN" --output-topic "arows2_$RUN" --group "ta2_$RUN" --output-format avro
  measure transform_json_2 transform_avro_2 "${t[@]}" --input-topic "raw_$RUN" --output-topic "jrows2_$RUN" --group "tj2_$RUN"
  measure load_parquet_json load_parquet_avro "${l[@]}" --input-topic "jrows_$RUN" --group "lj_$RUN" --out "$WORK/pj"
  measure load_parquet_avro "" "${l[@]}" --input-topic "arows_$RUN" --group "la_$RUN" --out "$WORK/pa"
  measure load_parquet_avro_2 "" "${l[@]}" --input-topic "arows_$RUN" --group "la2_$RUN" --out "$WORK/pa2"
  measure load_parquet_json_2 load_parquet_avro_2 "${l[@]}" --input-topic "jrows_$RUN" --group "lj2_$RUN" --out "$WORK/pj2"
  rm -rf "$WORK"/p[ja] "$WORK"/p[ja]2
  measure size_rows_json "" "$REL/examples/kafka_floor" consume 127.0.0.1:9092 "jrows_$RUN" "sj_$RUN"
  measure size_rows_avro "" "$REL/examples/kafka_floor" consume 127.0.0.1:9092 "arows_$RUN" "sa_$RUN"
  drop_data '(araw|jrows|jrows2|arows|arows2)'
}

# 3. loads: Cassandra against a bare scylla-driver loop, PostgreSQL against psql \copy, Parquet.
# A freshly started Cassandra compiles its write path during its first minute of writes (its
# rate climbs from 4,000 to 12,000 rows/s over ~45 s, measured): warm it up with
# BENCH_WARM_ROWS rows (a scratch keyspace, then dropped) so that whichever Cassandra step runs
# first does not pay for it. With 50,000 rows, rtds (run first) was 69-73% of the bare loop;
# on a warm server the two are equal.
bench_load() {
  local warm=${BENCH_WARM_ROWS:-400000} cols
  sync
  say "bench: warming up Cassandra ($warm rows)"
  { "$REL/rtds" ingest --source generate --count "$warm" --seed 2 --topic "warmraw_$RUN" &&
    "$REL/rtds" transform --input-topic "warmraw_$RUN" --output-topic "warm_$RUN" --dlq-topic "dlq_$RUN" \
      --group "tw_$RUN" &&
    "$REL/rtds" load --sink cassandra --input-topic "warm_$RUN" --group "lw_$RUN" --keyspace "bench_warm_$RUN" \
      --concurrency "$CONCURRENCY"; } \
    >"$WORK/warmup.out" 2>"$WORK/warmup.err" || die "bench: warming up Cassandra failed (see $WORK/warmup.err)"
  drop_data '(bench_warm|warmraw|warm)'
  measure load_cassandra "" "$REL/rtds" load --sink cassandra --input-topic "created_$RUN" --group "lc_$RUN" \
    --keyspace "bench_rtds_$RUN" --concurrency "$CONCURRENCY"
  # rtds's 1M fresh rows are flushed and compacted for minutes: drop them first, so that the
  # bare loop does not share the server with that (one run: the bare loop at 80% of rtds).
  drop_data 'bench_rtds'
  sync
  measure bare_cassandra load_cassandra "$REL/examples/bare_cassandra" 127.0.0.1:9092 "created_$RUN" "bc_$RUN" \
    127.0.0.1:9042 "bench_bare_$RUN" "$CONCURRENCY"
  drop_data 'bench_bare'
  sync
  measure bare_cassandra_2 load_cassandra_2 "$REL/examples/bare_cassandra" 127.0.0.1:9092 "created_$RUN" "bc2_$RUN" \
    127.0.0.1:9042 "bench_bare2_$RUN" "$CONCURRENCY"
  drop_data 'bench_bare2'
  sync
  measure load_cassandra_2 "" "$REL/rtds" load --sink cassandra --input-topic "created_$RUN" --group "lc2_$RUN" \
    --keyspace "bench_rtds2_$RUN" --concurrency "$CONCURRENCY"
  # Cassandra compacts its 2M fresh rows for minutes: drop them (and write back
  # the dirty pages) so that the PostgreSQL load and psql \copy share the CPU
  # with nothing else, as psql \copy did when it ran later than the load.
  drop_data 'bench_(rtds|rtds2|bare|bare2)'
  sync
  measure load_postgres "" "$REL/rtds" load --sink postgres --input-topic "created_$RUN" --group "lp_$RUN" \
    --pg-schema "bench_rtds_$RUN"
  # The row contract's columns, in order, as rtds created them (not written out here).
  cols=$(postgres_psql -qAt -c "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns \
    WHERE table_schema = 'bench_rtds_$RUN' AND table_name = 'created_users' AND column_name <> 'loaded_at'")
  say "bench: exporting the rows to CSV for psql \\copy"
  kafka_cli org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server 127.0.0.1:9092 --topic "created_$RUN" \
    --from-beginning --max-messages "$N" --timeout-ms 60000 2>/dev/null >"$WORK/rows.jsonl"
  python3 bench/report.py csv "$WORK/rows.jsonl" "$WORK/rows.csv" "$cols"
  sync
  postgres_psql -q -c "CREATE SCHEMA bench_copy_$RUN; CREATE TABLE bench_copy_$RUN.created_users (LIKE bench_rtds_$RUN.created_users INCLUDING ALL)"
  # psql \copy of the rows into schema $1's table (run under /usr/bin/time, so a bash -c); its
  # summary line carries the count psql reports (`COPY n`), and the step fails unless it is $3.
  copy_cmd='PGPASSWORD=$(cat "$0") psql -h 127.0.0.1 -p 5433 -U rtds -d rtds -c "\copy $1.created_users ($4) FROM '"'"'$2'"'"' CSV" >"$2.$1.log" && python3 bench/report.py copied "$2.$1.log" "$3"'
  postgres_psql -q -c "CREATE SCHEMA bench_copy2_$RUN; CREATE TABLE bench_copy2_$RUN.created_users (LIKE bench_rtds_$RUN.created_users INCLUDING ALL)"
  measure psql_copy load_postgres bash -c "$copy_cmd" "$STACK_DIR/postgres/password" "bench_copy_$RUN" "$WORK/rows.csv" "$N" "$cols"
  measure psql_copy_2 load_postgres_2 bash -c "$copy_cmd" "$STACK_DIR/postgres/password" "bench_copy2_$RUN" "$WORK/rows.csv" "$N" "$cols"
  sync
  measure load_postgres_2 "" "$REL/rtds" load --sink postgres --input-topic "created_$RUN" --group "lp2_$RUN" \
    --pg-schema "bench_rtds2_$RUN"
}

# 3b. the lakehouse table: the Delta load against the Parquet load of transform's rows (issue 37:
# at least 80% of Parquet's records/s), A-B-B-A, each into a directory of its own.
bench_lake() {
  say "bench: load --sink delta against --sink parquet"
  local f=("$REL/rtds" load --input-topic "created_$RUN")
  measure load_parquet load_delta "${f[@]}" --sink parquet --group "lq_$RUN" --out "$WORK/parquet"
  measure load_delta "" "${f[@]}" --sink delta --group "ld_$RUN" --out "$WORK/delta"
  measure load_delta_2 "" "${f[@]}" --sink delta --group "ld2_$RUN" --out "$WORK/delta2"
  measure load_parquet_2 load_delta_2 "${f[@]}" --sink parquet --group "lq2_$RUN" --out "$WORK/parquet2"
  rm -rf "$WORK/parquet" "$WORK/parquet2" "$WORK/delta" "$WORK/delta2"
}

# 3c. windowed aggregation (issue 40): rtds aggregate over the ingest's users, 1-minute windows
# of their ingest stamps over ~240 groups, against the same SQL as one batch GROUP BY in memory
# (examples/group_by.rs), A-B-B-A; then the state of ~10,000 groups (its summary's state_bytes).
bench_aggregate() {
  say "bench: aggregate against one batch GROUP BY"
  local a=("$REL/rtds" aggregate --input-topic "raw_$RUN" --dlq-topic "dlq_$RUN")
  local g=("$REL/examples/group_by" 127.0.0.1:9092 "raw_$RUN")
  measure aggregate "" "${a[@]}" --output-topic "agg_$RUN" --group "ag_$RUN" --sql bench/sql/windows.sql
  measure group_by aggregate "${g[@]}" bench/sql/windows.sql
  measure group_by_2 aggregate_2 "${g[@]}" bench/sql/windows.sql
  measure aggregate_2 "" "${a[@]}" --output-topic "agg2_$RUN" --group "ag2_$RUN" --sql bench/sql/windows.sql
  measure aggregate_10k "" "${a[@]}" --output-topic "agg10k_$RUN" --group "ak_$RUN" --sql bench/sql/windows_10k.sql
  drop_data '(agg|agg2|agg10k)'
}

# drop_batch_data: after the 1M-record steps, their data goes.
drop_batch_data() {
  say "bench: dropping the 1M-record steps' data"
  drop_data '.*'
  rm -rf "$WORK/rows.jsonl" "$WORK/rows.csv" "$WORK/parquet"
  # The steps above leave GBs of dirty pages; their write-back throttles the
  # stores' writes for a while, which would show as the real-time path's latency.
  sync
}

# 4. the real-time path: ingest at a fixed rate for BENCH_RT_SECONDS while `transform --follow`
# and `load --follow --sink cassandra` run; the load's summary has the end-to-end latency
# (rtds-ingested-at to Cassandra's write acknowledgement).
# metric ADDR NAME STAGE: the sum of NAME{stage="STAGE"} on a stage's /metrics (0 if absent).
metric() {
  python3 bench/report.py metric "$@"
}
load_written() { metric "$1" rtds_records_out_total load; }
# ready ADDR STAGE: the stage holds partitions of its input (its group has settled).
ready() { [ "$(metric "$1" rtds_partitions_assigned "$2" 2>/dev/null)" -gt 0 ]; }
# timed_pid PID: the pid of the command a backgrounded `timed` runs (the child of its /usr/bin/time).
timed_pid() {
  local t
  t=$(pgrep -P "$1" -x time || echo "$1")
  pgrep -P "$t"
}
stop_timed() { kill -TERM "$(timed_pid "$1")"; }
# cpu_now NAME=PID...: a snapshot of the CPU used so far by the stack's JVMs and the named
# processes, with the time (for `report.py cores`).
cpu_now() {
  local named=(cassandra="$(cat "$(pidfile cassandra)")" "$@") i
  for i in $(kafka_nodes); do named+=(kafka="$(cat "$(pidfile "$(kafka_node_name "$i")")")"); done
  python3 bench/report.py cpu "${named[@]}"
}
# deleting_logs: a Kafka node still holds the logs of a dropped topic (renamed *-delete at the
# drop, removed file.delete.delay.ms later: a minute).
deleting_logs() {
  local i
  for i in $(kafka_nodes); do
    compgen -G "$(kafka_node_dir "$i")/data/*-delete" >/dev/null && return 0
  done
  return 1
}
# settle: before a real-time run, wait until Kafka has removed what the bench dropped, then write
# back the dirty pages. Kafka removes a dropped topic's GBs a minute after the drop: in run
# 20261201t123254 that fell in the last second of the 1,000/s run, which measured p99 153 ms
# (ingest to transform 113) against 56 (33) in a run of the real-time step alone.
settle() {
  local t=$SECONDS
  wait_until "Kafka removing the dropped topics" 180 not deleting_logs ||
    say "bench: Kafka still removing dropped topics after 180s"
  sync
  say "bench: settled in $((SECONDS - t))s"
}
not() { ! "$@"; }
# requests_now ADDR: the Kafka requests a --follow stage's clients sent so far (its /metrics).
requests_now() { python3 bench/report.py requests "$1"; }
# realtime RATE [MODE]: MODE eos runs the transform --exactly-once (steps named rt<RATE>eos_*);
# MODE floor runs no stage but the client's floor (examples/kafka_floor.rs stream: bare
# librdkafka reading the ingest's topic and producing each record on, no work) and the broker
# under it; MODE flooreos the same exactly once (stream-eos: a transaction a batch).
# RATE 0 is the stages idle: nothing is ingested for BENCH_RT_SECONDS.
# librdkafka's statistics are on (every second) in every stage: the requests a second each
# client sends come from them (src/kafka/requests.rs).
realtime() {
  local rate=$1 mode=${2:-} secs=${BENCH_RT_SECONDS:-60} addr=127.0.0.1:9471 taddr=127.0.0.1:9472 n t
  settle
  local name="rt$1$mode" tag="rt$1${mode}_$RUN" transform= load= floor= procs
  local topics=(--dlq-topic "dlq_$tag") eos=() stats=(--kafka-option statistics.interval.ms=1000) linger=()
  # BENCH_RT_LINGER: the ingest's window (`--linger`; its default otherwise).
  [ -z "${BENCH_RT_LINGER:-}" ] || linger=(--linger "$BENCH_RT_LINGER")
  # BENCH_RT_PARTITIONS: every topic of the run made with that many partitions first (3 otherwise).
  if [ -n "${BENCH_RT_PARTITIONS:-}" ]; then
    for t in raw created dlq floor; do topic "${t}_$tag" "$BENCH_RT_PARTITIONS"; done
  fi
  [ "$mode" = eos ] && eos=(--exactly-once)
  local floor_mode=stream
  [ "$mode" = flooreos ] && floor_mode=stream-eos
  if [[ "$mode" == floor* ]]; then
    topic "raw_$tag"
    "$REL/examples/kafka_floor" "$floor_mode" 127.0.0.1:9092 "raw_$tag" "floor_$tag" 2>"$WORK/${name}_floor.err" &
    floor=$!
    sleep 5 # its group joined (it has no /metrics to say so)
    procs=(floor="$floor")
  else
    RTDS_METRICS_ADDR=$taddr timed "${name}_transform" "$REL/rtds" transform --follow "${eos[@]}" --input-topic "raw_$tag" \
      --output-topic "created_$tag" "${topics[@]}" --group "t_$tag" "${stats[@]}" &
    transform=$!
    RTDS_METRICS_ADDR=$addr timed "${name}_load" "$REL/rtds" load --follow --sink cassandra --input-topic "created_$tag" \
      "${topics[@]}" --group "l_$tag" --keyspace "bench_$tag" --concurrency "$CONCURRENCY" "${stats[@]}" &
    load=$!
    # The clock starts once both stages hold their partitions: what is measured
    # is the stream, not the stages' start-up.
    wait_until "transform --follow ready" 60 ready "$taddr" transform ||
      die "bench: transform --follow did not start (see $WORK/${name}_transform.err)"
    wait_until "load --follow ready" 60 ready "$addr" load || die "bench: load --follow did not start (see $WORK/${name}_load.err)"
    procs=(transform="$(timed_pid "$transform")" load="$(timed_pid "$load")")
    requests_now "$taddr" >"$WORK/${name}_treq_before.json"
    requests_now "$addr" >"$WORK/${name}_lreq_before.json"
  fi
  cpu_now "${procs[@]}" >"$WORK/${name}_cpu_before.json"
  if [ "$rate" = 0 ]; then
    sleep "$secs"
    : >"$WORK/${name}_ingest.time"
  else
    measure "${name}_ingest" "" "$REL/rtds" ingest --source generate --rate "$rate/s" --duration "${secs}s" \
      --seed "$rate" --topic "raw_$tag" "${linger[@]}" "${stats[@]}"
    n=$(python3 bench/report.py field "$WORK/${name}_ingest.out" out)
    t=$SECONDS
    if [ -n "$floor" ]; then
      sleep 2 # the floor keeps up within milliseconds at these rates; it has no count to wait for
    else
      until [ "$(load_written "$addr")" -ge "$n" ]; do
        [ $((SECONDS - t)) -lt 120 ] || die "bench: load --follow wrote $(load_written "$addr") of $n rows in 120s"
        sleep 1
      done
    fi
  fi
  cpu_now "${procs[@]}" >"$WORK/${name}_cpu_after.json"
  if [ -n "$floor" ]; then
    kill -0 "$floor" 2>/dev/null || die "bench: the floor stopped early (see $WORK/${name}_floor.err)"
    kill "$floor"
    wait "$floor" 2>/dev/null || true # killed: 143
    python3 bench/report.py cores "$name" "$rate" "$WORK/${name}" >>"$RESULTS"
    return
  fi
  requests_now "$taddr" >"$WORK/${name}_treq_after.json"
  requests_now "$addr" >"$WORK/${name}_lreq_after.json"
  python3 bench/report.py cores "$name" "$rate" "$WORK/${name}" >>"$RESULTS"
  stop_timed "$transform"
  stop_timed "$load"
  wait "$transform" "$load" || die "bench: a --follow stage failed (see $WORK/${name}_*.err)"
  record "${name}_transform" ""
  record "${name}_load" ""
}
bench_realtime() {
  local rate
  for rate in ${BENCH_RT_RATES:-0 100 1000 10000}; do
    say "bench: real-time path at $rate records/s"
    realtime "$rate"
    drop_data ".*rt${rate}"
    say "bench: the Kafka client's floor at $rate records/s"
    realtime "$rate" floor
    drop_data ".*rt${rate}floor"
  done
  # The same with the transform --exactly-once (the load reads read_committed: a row is seen
  # once its transaction commits).
  for rate in ${BENCH_RT_RATES:-0 100 1000 10000}; do
    say "bench: real-time path at $rate records/s, transform --exactly-once"
    realtime "$rate" eos
    drop_data ".*rt${rate}eos"
    say "bench: the Kafka client's floor at $rate records/s, exactly once"
    realtime "$rate" flooreos
    drop_data ".*rt${rate}flooreos"
  done
}

# 5. a bounded user_automation DAG run (airflow dags test) with the release binary.
bench_dag() {
  local dag_count=${BENCH_DAG_COUNT:-100000} t
  say "bench: user_automation DAG run, $dag_count users"
  scripts/stack.sh install airflow
  . scripts/stack/airflow.sh
  RTDS_BIN="$REL/rtds" RTDS_OUT="$WORK/dag-parquet" airflow_vars
  airflow_migrate || die "bench: airflow db migrate failed"
  t=$(date +%s.%N)
  airflow_dag_test user_automation "{\"count\": $dag_count, \"seed\": 7, \"sinks\": [\"cassandra\", \"postgres\", \"parquet\"]}" \
    "$WORK/dag.log" migrated || die "bench: the DAG run failed"
  # The run's wall time as Airflow records it (start to end of the DAG run), and
  # the whole `airflow dags test` command's (with its start-up, ~10 s of Python).
  python3 bench/report.py dag "$dag_count" "$t" "$(date +%s.%N)" "$WORK/dag.log" >>"$RESULTS"
}

# 6. criterion: the generator alone, the in-process transform against arrow-json decoding alone,
# and the load's batch: its rows parsed, and parsed and written as a Parquet file
bench_criterion() {
  say "bench: criterion"
  cargo bench --quiet --bench generator --bench transform --bench load -- --noplot >"$WORK/criterion.txt" 2>&1 || tail -n 30 "$WORK/criterion.txt" >&2
}

# 7. build profiles: a clean build of the rtds binary under each of BENCH_PROFILES (in a target
# directory of its own; the crates are already downloaded), then the transform over ingest's
# records with that binary: what each profile costs to build and what it gives. Each builds the
# commit the run started at (a copy of it): an hour of builds must not pick up edits made meanwhile.
profile_args() {
  case $1 in
    dev) echo "--profile dev" ;;
    release) echo "--release" ;;
    o1 | o2) echo "--release --config profile.release.opt-level=${1#o}" ;;
    *) echo "--profile $1" ;;
  esac
}
# An entry PROFILE:REV builds commit REV instead (labelled PROFILE-REV): what a dependency added to
# the build, measured in the same run as the commit without it.
bench_profiles() {
  local entry p rev label dir bin src
  for entry in ${BENCH_PROFILES:-ship o1 release dev}; do
    p=${entry%%:*} rev=$COMMIT label=$p
    [[ "$entry" != *:* ]] || { rev=$(git rev-parse --verify "${entry#*:}^{commit}") label="$p-${entry#*:}"; }
    src="$WORK/src-$label" dir="$WORK/target-$label"
    rm -rf "$src" "$dir" && mkdir -p "$src"
    git archive "$rev" | tar -x -C "$src"
    say "bench: clean build of rtds, profile $p at ${rev:0:10}"
    # shellcheck disable=SC2046 # the profile's arguments are words
    timed "build_$label" cargo build --quiet --bin rtds $(profile_args "$p") --manifest-path "$src/Cargo.toml" --target-dir "$dir" ||
      { tail -n 20 "$WORK/build_$label.err" >&2; die "bench: the $label build failed"; }
    bin=$(find "$dir" -mindepth 2 -maxdepth 2 -name rtds -type f)
    printf '{"profile": "%s", "commit": "%s", "binary_bytes": %s}\n' "$p" "$rev" "$(stat -c %s "$bin")" >"$WORK/build_$label.out"
    record "build_$label" ""
    cp "$bin" "$WORK/rtds-$label"
    rm -rf "$dir" "$src"
    measure "transform_$label" "" "$WORK/rtds-$label" transform --input-topic "raw_$RUN" --output-topic "prof${label}_$RUN" \
      --dlq-topic "dlq_$RUN" --group "tp${label}_$RUN"
    drop_data "prof${label}"
  done
}

# 8. full speed against another build (issue 35: no stage more than 5% slower than before it): the
# release build of BENCH_AGAINST (default ad42e32, the last commit before issue 35; its target
# directory is kept for the next run) and this one in turns, BENCH_AGAINST_ROUNDS rounds (A-B, then
# B-A, ...), each step of BENCH_AGAINST_STEPS. The machine drifts ±10% between runs minutes apart
# (bench/README.md "Full speed found again"), so builds compare only in turns, never against an
# earlier run's figures. Each build transforms the ingest's records, and each load reads the rows
# its own build's transform wrote (what a user of that build gets).
AGAINST_STEPS="ingest transform transform_eos load_parquet load_postgres load_cassandra"
against_run() {
  local who=$1 step=$2 i=$3 bin=$4 name="${1}_${2}_${3}" in="vscreated_${1}_1_$RUN"
  case $step in
    ingest) measure "$name" "" "$bin" ingest --source generate --count "$N" --seed 1 --topic "vsraw_${who}_$RUN" ;;
    transform) measure "$name" "" "$bin" transform --input-topic "raw_$RUN" --output-topic "vscreated_${who}_${i}_$RUN" \
      --dlq-topic "dlq_$RUN" --group "vst_${who}_${i}_$RUN" ;;
    transform_eos) measure "$name" "" "$bin" transform --exactly-once --input-topic "raw_$RUN" \
      --output-topic "vseos_${who}_$RUN" --dlq-topic "dlq_$RUN" --group "vse_${who}_${i}_$RUN" ;;
    load_parquet) measure "$name" "" "$bin" load --sink parquet --input-topic "$in" --group "vsq_${who}_${i}_$RUN" \
      --out "$WORK/vs_parquet" ;;
    load_postgres) measure "$name" "" "$bin" load --sink postgres --input-topic "$in" --group "vsp_${who}_${i}_$RUN" \
      --pg-schema "vs_${who}_${i}_$RUN" ;;
    load_cassandra) measure "$name" "" "$bin" load --sink cassandra --input-topic "$in" --group "vsc_${who}_${i}_$RUN" \
      --keyspace "vs_${who}_${i}_$RUN" --concurrency "$CONCURRENCY" ;;
  esac
  # Each run's output goes before the next run, which it would slow (the first transform's rows stay: the loads read them).
  rm -rf "$WORK/vs_parquet"
  drop_data "(vsraw_${who}|vseos_${who}|vs_${who}_${i})"
  [ "$step" != transform ] || [ "$i" = 1 ] || drop_data "vscreated_${who}_${i}"
  sync
}
bench_against() {
  local rev dir src step i rounds=${BENCH_AGAINST_ROUNDS:-8} steps=${BENCH_AGAINST_STEPS:-ingest transform transform_eos load_parquet load_postgres}
  rev=$(git rev-parse --verify "${BENCH_AGAINST:-ad42e32}^{commit}") || die "bench: BENCH_AGAINST is not a commit"
  for step in $steps; do
    [[ " $AGAINST_STEPS " == *" $step "* ]] || die "bench: unknown step '$step' in BENCH_AGAINST_STEPS (steps: $AGAINST_STEPS)"
    [[ "$step" != load_* || " $steps " == *" transform "* ]] || die "bench: BENCH_AGAINST_STEPS: $step reads what transform wrote"
  done
  # The sources at a fixed path beside the target: cargo then finds the build of a run before fresh.
  dir="$TARGET/against-${rev:0:12}" src="$TARGET/against-${rev:0:12}-src"
  [ -d "$src" ] || { rm -rf "$src.part" && mkdir -p "$src.part" && git archive "$rev" | tar -x -C "$src.part" && mv "$src.part" "$src"; }
  say "bench: release build of ${rev:0:10} (BENCH_AGAINST) in $dir"
  timed against_build cargo build --quiet --release --bin rtds --manifest-path "$src/Cargo.toml" --target-dir "$dir" ||
    { tail -n 20 "$WORK/against_build.err" >&2; die "bench: the build of ${rev:0:10} failed"; }
  # Run where it was built: a copy a run would be 700 MB of scratch (the release profile keeps line tables).
  local then_bin="$dir/release/rtds"
  # The report names the build compared with (a kept target directory builds in seconds).
  printf '{"commit": "%s"}\n' "$rev" >"$WORK/against_build.out"
  record against_build ""
  for step in $steps; do
    for i in $(seq 1 "$rounds"); do
      if [ $((i % 2)) = 1 ]; then
        against_run now "$step" "$i" "$REL/rtds" && against_run then "$step" "$i" "$then_bin"
      else
        against_run then "$step" "$i" "$then_bin" && against_run now "$step" "$i" "$REL/rtds"
      fi
    done
  done
  drop_data '(vscreated_now_1|vscreated_then_1)'
}

# BENCH_STEPS picks steps (default: all, in this order). transform and eos read ingest's topic,
# load reads transform's: a step runs only with the ones it reads.
ALL_STEPS="ingest transform eos avro load lake aggregate against realtime dag criterion"
# profiles (clean builds, an hour or more on 2 cores) runs only when BENCH_STEPS names it.
KNOWN_STEPS="ingest profiles transform eos avro load lake aggregate against realtime dag criterion"
STEPS=" ${BENCH_STEPS:-$ALL_STEPS} "
for s in $STEPS; do
  [[ " $KNOWN_STEPS " == *" $s "* ]] || die "bench: unknown step '$s' in BENCH_STEPS (steps: $KNOWN_STEPS)"
done
needs() { [[ "$STEPS" != *" $1 "* || "$STEPS" == *" $2 "* ]] || die "bench: step $1 needs step $2 (BENCH_STEPS)"; }
needs transform ingest
needs eos ingest
needs avro ingest
needs profiles ingest
needs load transform
needs lake transform
needs aggregate ingest
needs against ingest
# The 1M-record data goes once its steps are done: before the next step, which it would slow.
batch_data=""
for s in $KNOWN_STEPS; do
  [[ "$STEPS" == *" $s "* ]] || continue
  case $s in
    ingest | profiles | transform | eos | avro | load | lake | aggregate | against) batch_data=1 ;;
    *) [ -z "$batch_data" ] || { drop_batch_data; batch_data=""; } ;;
  esac
  "bench_$s"
done
[ -z "$batch_data" ] || drop_batch_data

# A run of every step replaces bench/results/latest.*; a run of some steps reports into $WORK.
OUT="$ROOT/bench/results/latest"
[ "$STEPS" = " $ALL_STEPS " ] || OUT="$WORK/report"
# The chart needs matplotlib: a small venv of its own, made once.
BENCH_VENV="$STACK_DIR/bench-venv"
[ -x "$BENCH_VENV/bin/python" ] || python3 -m venv "$BENCH_VENV"
"$BENCH_VENV/bin/pip" install -q --disable-pip-version-check -r bench/requirements.txt >&2
# criterion's results are shown only when this run made them (its directory keeps earlier ones).
CRITERION="$TARGET/criterion"
[[ "$STEPS" == *" criterion "* ]] || CRITERION=""
"$BENCH_VENV/bin/python" bench/report.py report "$RESULTS" "$CRITERION" "$N" "$OUT.png" >"$OUT.md"
python3 bench/report.py json "$RESULTS" "$RUN" >"$OUT.json"
cat "$OUT.md"
say "results of run $RUN: $OUT.json, .md and .png; scratch data in $WORK"
