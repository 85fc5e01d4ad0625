#!/usr/bin/env bash
# `make faults`: the fault-injection suite (tests/it/faults.rs, with the kill -9
# and outage tests of the stage modules), one test at a time because some stop
# the Kafka broker or a store; then a table of each scenario's figures.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
log="$ROOT/.stack/faults.log"
set +e
# --features fault-injection: the fault-test hooks the kill -9 tests drive (src/delivery/fault.rs).
cargo test --features fault-injection --test it -- --include-ignored --test-threads=1 --nocapture faults:: kill_9 outage restart delivery:: \
  --skip cluster_ 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# The cluster scenarios on a three-broker KRaft cluster of their own, beside the stack's
# one broker (ports 19092-19097), stopped afterwards. They run the release build, without the
# fault-test hooks (their throughput is a figure a user gets; RTDS_IT_BIN, the binary the tests
# run); the test binary is the one built above, with the same features.
cargo build --release --quiet --bin rtds
export RTDS_KAFKA_NODES=3 RTDS_KAFKA_PORT=19092
scripts/stack.sh up kafka
cluster=$(scripts/stack.sh env kafka | sed -n 's/^export RTDS_BROKERS=//p')
RTDS_IT_BIN="${CARGO_TARGET_DIR:-$HOME/.cache/rtds/target}/release/rtds" RTDS_BROKERS=$cluster \
  cargo test --features fault-injection --test it -- --ignored --test-threads=1 --nocapture cluster_ 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
scripts/stack.sh down kafka
unset RTDS_KAFKA_NODES RTDS_KAFKA_PORT
set -e
# The decode path under libFuzzer for FUZZ_SECONDS (cargo-fuzz needs a nightly
# toolchain; both are installed here on first use), seeded with the contract vectors.
if [ "${FUZZ_SECONDS:-300}" -gt 0 ]; then
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  command -v cargo-fuzz >/dev/null || env -u CARGO_TARGET_DIR cargo install --locked cargo-fuzz
  corpus="$ROOT/.stack/fuzz/corpus"
  mkdir -p "$corpus"
  split -l 1 -d tests/fixtures/contract/users_raw.jsonl "$corpus/contract-"
  fuzz_log="$ROOT/.stack/fuzz.log"
  # Its own target directory: nightly, instrumented builds share nothing with the stable ones.
  # No AddressSanitizer: it instruments the bundled C libraries too, and librdkafka's configure
  # then fails to link; libFuzzer still catches every panic, abort and timeout.
  if CARGO_TARGET_DIR="$HOME/.cache/rtds/fuzz-target" cargo +nightly fuzz run --sanitizer none --fuzz-dir fuzz decode "$corpus" -- -max_total_time="${FUZZ_SECONDS:-300}" \
    -max_len=65536 >"$fuzz_log" 2>&1; then
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$fuzz_log" | tail -n 1)
    printf 'FAULT {"scenario": "cargo-fuzz decode for %ss, no crash", "records": %s, "lost": null, "duplicated": null, "recovery_s": null}\n' \
      "${FUZZ_SECONDS:-300}" "${runs:-0}" >>"$log"
  else
    tail -n 30 "$fuzz_log"
    echo "cargo fuzz found a crash: see $fuzz_log and fuzz/artifacts/decode" >&2
    rc=1
  fi
fi

printf '\n| scenario | records | lost | duplicated | recovery s |\n|---|---:|---:|---:|---:|\n'
grep -o 'FAULT {.*}' "$log" | sed 's/^FAULT //' | python3 -c '
import json, sys
def shown(v):
    return "not measured" if v is None else v
for line in sys.stdin:
    f = json.loads(line)
    rec = "" if f["recovery_s"] is None else f["recovery_s"]
    print("| {} | {:,} | {} | {} | {} |".format(f["scenario"], f["records"], shown(f["lost"]), shown(f["duplicated"]), rec))
'
# The scale-out scenario's figures (tests/it/cluster.rs): throughput by replicas, output gaps.
printf '\n| scale-out on 3 brokers (release build) | figure |\n|---|---:|\n'
grep -o 'SCALE {.*}' "$log" | sed 's/^SCALE //' | python3 -c '
import json, sys
for line in sys.stdin:
    f = json.loads(line)
    if "replicas" in f:
        print("| {} transform --exactly-once replica(s), records/s | {:,.0f} |".format(f["replicas"], f["records_per_s"]))
    elif "event" in f:
        print("| longest gap in the output after: {}, s | {} |".format(f["event"], f["longest_gap_s"]))
    else:
        print("| the scenario, records/s (wall {} s) | {:,.0f} |".format(f["wall_s"], f["scenario_records_per_s"]))
'
# The fault matrix (tests/it/matrix.rs): each fault kind x target, three faults each, read back.
if grep -q 'MATRIX {' "$log"; then
  mkdir -p bench/results
  table="bench/results/matrix-$(date -u +%Y%m%dt%H%M%S).md"
  grep -o 'MATRIX {.*}' "$log" | sed 's/^MATRIX //' | python3 -c '
import json, sys
print("| fault | target | records | lost | duplicated | out of order | stale versions | longest gap s | progress s | recovery s | peak lag | restarts | started over | reconcile |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
def shown(v):
    return "not measured" if v is None else v
for line in sys.stdin:
    f = json.loads(line)
    print("| {} | {} | {:,} | {} | {} | {} | {} | {} | {} | {} | {:,} | {} | {} | {} |".format(
        f["fault"], f["target"], f["records"], f["lost"], f["duplicated"], f["out_of_order"], f["stale"],
        shown(f["longest_gap_s"]), shown(f["progress_s"]), shown(f["recovery_s"]), f["peak_lag"], f["restarts"], f.get("started_over", 0), f["reconcile"]))
' | tee "$table"
  echo "(the matrix table: $table)"
fi
exit "$rc"
