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
cargo test --test it -- --include-ignored --test-threads=1 --nocapture faults:: kill_9 outage restart 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
printf '\n| scenario | records | lost | duplicated | recovery s |\n|---|---:|---:|---:|---:|\n'
sed -n 's/^FAULT //p' "$log" | python3 -c '
import json, sys
for line in sys.stdin:
    f = json.loads(line)
    rec = "" if f["recovery_s"] is None else f["recovery_s"]
    print("| {} | {:,} | {} | {} | {} |".format(f["scenario"], f["records"], f["lost"], f["duplicated"], rec))
'
exit "$rc"
