# Apache Airflow 3 for the stack: a venv under .stack/airflow (pinned in
# airflow/requirements.txt), SQLite metadata, api-server on 127.0.0.1:8080,
# scheduler and dag-processor, the DAGs of dags/, connections to the stack.
# Not started by a bare `scripts/stack.sh up`: `scripts/stack.sh up airflow`.

AIRFLOW_DIR="$STACK_DIR/airflow"
AIRFLOW_VENV="$AIRFLOW_DIR/venv"
AIRFLOW_PORT=8080
export AIRFLOW_HOME="$AIRFLOW_DIR/home"

airflow_install() {
  apt_ensure python3-venv
  local stamp="$AIRFLOW_VENV/.requirements"
  if [ -f "$stamp" ] && cmp -s "$stamp" <(cat "$ROOT"/airflow/requirements*.txt); then return 0; fi
  say "airflow: installing into $AIRFLOW_VENV (first run only)"
  [ -x "$AIRFLOW_VENV/bin/python" ] || python3 -m venv "$AIRFLOW_VENV"
  "$AIRFLOW_VENV/bin/pip" install -q --disable-pip-version-check \
    -r "$ROOT/airflow/requirements.txt" -r "$ROOT/airflow/requirements-dev.txt" >&2 || die "airflow: pip install failed"
  cat "$ROOT"/airflow/requirements*.txt >"$stamp"
}

# The environment Airflow runs with: DAGs, connections to the stack, the rtds binary.
airflow_vars() {
  local conns lineage
  export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
  export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/airflow/plugins"
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
  export AIRFLOW__API__HOST=127.0.0.1
  export AIRFLOW__API__PORT=$AIRFLOW_PORT
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AIRFLOW_PORT/execution/"
  # OpenLineage events of every task run, one JSON a line, into a file (README "Operations");
  # a deployment points it at its lineage server instead ({"type": "http", "url": ...}).
  export AIRFLOW__OPENLINEAGE__NAMESPACE=rtds
  lineage="{\"type\": \"file\", \"log_file_path\": \"$AIRFLOW_DIR/openlineage.jsonl\", \"append\": true}"
  export AIRFLOW__OPENLINEAGE__TRANSPORT="${AIRFLOW__OPENLINEAGE__TRANSPORT:-$lineage}"
  # The connections rtds_kafka/_cassandra/_postgres, defined once in airflow_connections.py
  # (tests/dags/conftest.py uses it too), of the addresses `scripts/stack.sh env` prints.
  # In a subshell: the PostgreSQL URL is only in that Python's environment, never in an
  # argument, and nothing but the AIRFLOW_CONN_* lines it prints is exported here.
  conns=$(eval "$("$ROOT/scripts/stack.sh" env)" && "$AIRFLOW_VENV/bin/python" "$ROOT/scripts/stack/airflow_connections.py") ||
    die "airflow: could not define the connections to the stack"
  eval "$conns"
  # The optimized build (`make ship`): a DAG run from the UI gets the speed the bench shows.
  export RTDS_BIN="${RTDS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/rtds/target}/ship/rtds}"
  export RTDS_OUT="${RTDS_OUT:-$STACK_DIR/parquet}"
}

# airflow_dag_test DAG_ID CONF LOG: one real run with `airflow dags test` (no
# scheduler needed); fails, with the end of LOG, unless the run succeeded.
airflow_dag_test() {
  local dag=$1 conf=$2 log=$3
  [ "${4:-}" = migrated ] || airflow_migrate || return 1
  if ! "$AIRFLOW_VENV/bin/airflow" dags test "$dag" -c "$conf" >"$log" 2>&1 || ! grep -q "DagRun Finished.*state=success" "$log"; then
    tail -n 40 "$log" >&2
    printf '[stack] error: the %s run failed (whole log: %s)\n' "$dag" "$log" >&2
    return 1
  fi
}

# airflow_migrate: create or upgrade Airflow's metadata database.
airflow_migrate() {
  mkdir -p "$AIRFLOW_HOME"
  "$AIRFLOW_VENV/bin/airflow" db migrate >"$AIRFLOW_DIR/migrate.log" 2>&1 || { tail -n 20 "$AIRFLOW_DIR/migrate.log" >&2; return 1; }
}

airflow_answers() { curl -fsS "http://127.0.0.1:$AIRFLOW_PORT/api/v2/monitor/health" >/dev/null 2>&1; }

airflow_up() {
  local t0=$SECONDS c
  if is_running airflow-api && airflow_answers; then
    say "airflow: already up on http://127.0.0.1:$AIRFLOW_PORT"
    return 0
  fi
  airflow_vars
  airflow_migrate || die "airflow db migrate failed"
  for c in api-server scheduler dag-processor triggerer; do
    is_running "airflow-${c%%-*}" || start_bg "airflow-${c%%-*}" "$AIRFLOW_DIR/$c.log" "$AIRFLOW_VENV/bin/airflow" "$c"
  done
  wait_until "airflow api-server" 120 airflow_answers || { tail -n 30 "$AIRFLOW_DIR/api-server.log" >&2; die "airflow did not answer"; }
  say "airflow: up on http://127.0.0.1:$AIRFLOW_PORT in $((SECONDS - t0))s (user admin, password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)"
}

airflow_down() {
  local c
  for c in triggerer dag scheduler api; do stop_bg "airflow-$c" 30; done
}

airflow_status() {
  if is_running airflow-api; then
    echo "airflow: running (pid $(cat "$(pidfile airflow-api)")) on http://127.0.0.1:$AIRFLOW_PORT"
  else
    echo "airflow: stopped"
    return 1
  fi
}

airflow_logs() { tail -n 50 "$AIRFLOW_DIR"/*.log 2>/dev/null || true; }

airflow_env() { echo "export AIRFLOW_HOME=$AIRFLOW_HOME"; }
