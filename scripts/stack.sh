#!/usr/bin/env bash
# The rtds stack on this machine, without Docker: Kafka (KRaft), Cassandra,
# PostgreSQL, a schema registry (Apicurio) and, on demand, Airflow, on loopback,
# data under .stack/.
#   scripts/stack.sh up|down|status|logs|env|install [kafka|cassandra|postgres|registry|airflow...]
#   scripts/stack.sh services: the services `up` starts when none is named, one a line
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/stack/lib.sh
. "$ROOT/scripts/stack/lib.sh"
# What `up`/`down` act on when no service is named (a store's stack script joins here);
# the registry after PostgreSQL, which holds its data (`down` stops it first);
# Airflow is started on demand.
DEFAULT_SERVICES=(kafka cassandra postgres registry)
ALL_SERVICES=("${DEFAULT_SERVICES[@]}" airflow)
for s in "${ALL_SERVICES[@]}"; do
  # shellcheck disable=SC1090
  . "$ROOT/scripts/stack/$s.sh"
done

cmd=${1:-status}
shift || true
if [ "$cmd" = services ]; then
  printf '%s\n' "${DEFAULT_SERVICES[@]}"
  exit 0
fi
services=("$@")
[ ${#services[@]} -eq 0 ] && services=("${DEFAULT_SERVICES[@]}")
[ "$cmd" = down ] && [ $# -eq 0 ] && services=("${ALL_SERVICES[@]}")
for s in "${services[@]}"; do
  [[ " ${ALL_SERVICES[*]} " == *" $s "* ]] || die "unknown service '$s' (known: ${ALL_SERVICES[*]})"
done

case "$cmd" in
  install) for s in "${services[@]}"; do "${s}_install"; done ;;
  up)
    mkdir -p "$STACK_DIR"
    for s in "${services[@]}"; do "${s}_install"; done
    for s in "${services[@]}"; do "${s}_up"; done
    ;;
  down)
    # Reverse order: the registry first, then the stores, the broker last.
    for ((i = ${#services[@]} - 1; i >= 0; i--)); do "${services[$i]}_down"; done
    ;;
  status)
    rc=0
    for s in "${services[@]}"; do "${s}_status" || rc=1; done
    exit $rc
    ;;
  logs) for s in "${services[@]}"; do "${s}_logs"; done ;;
  env) for s in "${services[@]}"; do "${s}_env"; done ;;
  *) die "usage: scripts/stack.sh up|down|status|logs|env|install [kafka|cassandra|postgres|registry|airflow...]" ;;
esac
