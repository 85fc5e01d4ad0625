# Apache Cassandra 5.0 for the stack: cassandra-all from Maven Central started
# through CassandraDaemon, native protocol on 127.0.0.1:9042, data under .stack/cassandra.

CASSANDRA_PORT=9042
CASSANDRA_DIR="$STACK_DIR/cassandra"
CASSANDRA_CP_FILE="$CASSANDRA_DIR/classpath.txt"
CASSANDRA_SRC="$ROOT/stack/cassandra"
# Cassandra's request threads (its shared executor pool) wait for work in timed parks of 10 µs
# to 1 ms, each one a wake-up: at 1,000 writes/s 25,000 context switches a second, the JVM
# at half a core. With the kernel free to defer those timers by up to 1 ms (its timer slack,
# which every thread inherits), 3,700 a second and a fifth of a core, the work itself still
# handed over at once (bench/README.md, "Cassandra's idle wake-ups"). Work that waits on a
# socket or a lock is not deferred: slack applies to timeouts only.
CASSANDRA_TIMER_SLACK_NS=1000000

cassandra_install() {
  command -v java >/dev/null || apt_ensure openjdk-17-jre-headless
  command -v javac >/dev/null || apt_ensure openjdk-17-jdk-headless
  command -v mvn >/dev/null || apt_ensure maven
  maven_classpath "$CASSANDRA_SRC" "$CASSANDRA_CP_FILE"
  # The CQL probe, compiled once against the driver on the same classpath.
  if [ ! -f "$CASSANDRA_DIR/probe/CqlProbe.class" ] || [ "$CASSANDRA_SRC/CqlProbe.java" -nt "$CASSANDRA_DIR/probe/CqlProbe.class" ]; then
    mkdir -p "$CASSANDRA_DIR/probe"
    javac -nowarn -cp "$(cat "$CASSANDRA_CP_FILE")" -d "$CASSANDRA_DIR/probe" "$CASSANDRA_SRC/CqlProbe.java" >&2 \
      || die "cassandra: compiling CqlProbe failed"
  fi
}

cassandra_version() { tr ':' '\n' <"$CASSANDRA_CP_FILE" | sed -n 's|.*/cassandra-all-\(.*\)\.jar$|\1|p' | head -n 1; }

# cassandra_cql "CQL" ...: run statements, print rows as pipe-separated text.
cassandra_cql() {
  java -Xmx128m -Dlogback.configurationFile="$CASSANDRA_SRC/logback-probe.xml" \
    -cp "$(cat "$CASSANDRA_CP_FILE"):$CASSANDRA_DIR/probe" CqlProbe 127.0.0.1 "$CASSANDRA_PORT" "$@"
}

cassandra_answers() { cassandra_cql "SELECT release_version FROM system.local" 2>/dev/null | grep -q '^[0-9]'; }

cassandra_up() {
  local t0=$SECONDS jamm opts p
  if is_running cassandra && cassandra_answers; then
    say "cassandra: already up on 127.0.0.1:$CASSANDRA_PORT"
    return 0
  fi
  if ! is_running cassandra; then
    for p in "$CASSANDRA_PORT" 7000; do
      port_open "$p" && die "cassandra: 127.0.0.1:$p is taken by $(port_owner "$p"), not by this stack"
    done
  fi
  mkdir -p "$CASSANDRA_DIR/conf" "$CASSANDRA_DIR/logs"
  tls_certs
  sed -e "s|@DIR@|$CASSANDRA_DIR|g" -e "s|@TLS_DIR@|$TLS_DIR|g" -e "s|@TLS_PASSWORD@|$(cat "$TLS_DIR/server.p12.password")|g" \
    "$CASSANDRA_SRC/cassandra.yaml.in" >"$CASSANDRA_DIR/conf/cassandra.yaml"
  chmod 600 "$CASSANDRA_DIR/conf/cassandra.yaml"
  if ! is_running cassandra; then
    jamm=$(tr ':' '\n' <"$CASSANDRA_CP_FILE" | grep '/jamm-' | head -n 1)
    mapfile -t opts < <(grep -v '^\s*#' "$CASSANDRA_SRC/jvm17.options" | grep -v '^\s*$')
    # sh sets its own slack and execs java (same pid), whose threads inherit it.
    start_bg cassandra "$CASSANDRA_DIR/logs/stdout.log" \
      sh -c '{ echo "$0" >/proc/self/timerslack_ns; } 2>/dev/null; exec "$@"' "$CASSANDRA_TIMER_SLACK_NS" \
      java "${opts[@]}" \
      "-Xlog:gc:file=$CASSANDRA_DIR/logs/gc.log:time:filecount=2,filesize=10M" \
      -javaagent:"$jamm" \
      -Dcassandra.config="file://$CASSANDRA_DIR/conf/cassandra.yaml" \
      -Dcassandra.storagedir="$CASSANDRA_DIR" \
      -Dcassandra.logdir="$CASSANDRA_DIR/logs" \
      -Dlogback.configurationFile="$CASSANDRA_SRC/logback.xml" \
      -Dcassandra-foreground=yes \
      -Dcassandra.skip_wait_for_gossip_to_settle=0 \
      -Dcassandra.ring_delay_ms=1000 \
      -Dcassandra.superuser_setup_delay_ms=0 \
      -Dcassandra.load_ring_state=false \
      -cp "$(cat "$CASSANDRA_CP_FILE")" org.apache.cassandra.service.CassandraDaemon
  fi
  local deadline=$((SECONDS + 180))
  until cassandra_answers; do
    if ! is_running cassandra || [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$CASSANDRA_DIR/logs/system.log" "$CASSANDRA_DIR/logs/stdout.log" >&2 2>/dev/null || true
      die "cassandra did not answer CQL on 127.0.0.1:$CASSANDRA_PORT"
    fi
    sleep 1
  done
  [ "$(cat "/proc/$(cat "$(pidfile cassandra)")/timerslack_ns" 2>/dev/null)" = "$CASSANDRA_TIMER_SLACK_NS" ] ||
    say "cassandra: its timer slack is not ${CASSANDRA_TIMER_SLACK_NS} ns (started before, or this kernel has no /proc/PID/timerslack_ns): it will idle at a higher CPU cost"
  say "cassandra: up on 127.0.0.1:$CASSANDRA_PORT (Apache Cassandra $(cassandra_version)) in $((SECONDS - t0))s"
}

cassandra_down() { stop_bg cassandra 60; }

cassandra_status() { service_status cassandra "$CASSANDRA_PORT"; }

cassandra_logs() { tail -n 100 "$CASSANDRA_DIR/logs/system.log" 2>/dev/null || true; }

cassandra_env() { echo "export RTDS_CASSANDRA_NODES=127.0.0.1:$CASSANDRA_PORT"; }
