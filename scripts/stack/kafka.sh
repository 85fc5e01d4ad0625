# Apache Kafka for the stack: one KRaft node (broker + controller) on
# 127.0.0.1:9092 (controller 9093), jars from Maven Central, data under .stack/kafka.

KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
KAFKA_DIR="$STACK_DIR/kafka"
KAFKA_CP_FILE="$KAFKA_DIR/classpath.txt"

kafka_install() {
  command -v java >/dev/null || apt_ensure openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_ensure maven
  maven_classpath "$ROOT/stack/kafka" "$KAFKA_CP_FILE"
}

kafka_version() { tr ':' '\n' <"$KAFKA_CP_FILE" | sed -n 's|.*/kafka_2.13-\(.*\)\.jar$|\1|p' | head -n 1; }

# kafka_cli CLASS ARGS...: run one of Kafka's tools (e.g. org.apache.kafka.tools.TopicCommand).
kafka_cli() {
  local class=$1
  shift
  java -Xmx256m -Dlog4j2.configurationFile="$ROOT/stack/kafka/log4j2.yaml" -Dkafka.logs.dir="$KAFKA_DIR" \
    -cp "$(cat "$KAFKA_CP_FILE")" "$class" "$@"
}

kafka_config() {
  mkdir -p "$KAFKA_DIR/data"
  cat >"$KAFKA_DIR/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
log.retention.hours=168
log.segment.bytes=268435456
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
CONF
}

kafka_answers() {
  kafka_cli org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --command-config /dev/null >/dev/null 2>&1
}

kafka_up() {
  local t0=$SECONDS
  if is_running kafka && kafka_answers; then
    say "kafka: already up on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  if ! is_running kafka && { port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT"; }; then
    die "kafka: port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is taken by another process (not started by this stack)"
  fi
  kafka_config
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    kafka_cli kafka.tools.StorageTool format -t "$(kafka_cli kafka.tools.StorageTool random-uuid)" \
      -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/format.log" 2>&1 \
      || { cat "$KAFKA_DIR/format.log" >&2; die "kafka: formatting the storage failed"; }
  fi
  if ! is_running kafka; then
    start_bg kafka "$KAFKA_DIR/stdout.log" java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true -Dkafka.logs.dir="$KAFKA_DIR" \
      -Dlog4j2.configurationFile="$ROOT/stack/kafka/log4j2.yaml" \
      -cp "$(cat "$KAFKA_CP_FILE")" kafka.Kafka "$KAFKA_DIR/server.properties"
  fi
  if ! wait_until "kafka metadata" 90 kafka_answers; then
    tail -n 30 "$KAFKA_DIR/server.log" "$KAFKA_DIR/stdout.log" >&2 2>/dev/null || true
    die "kafka did not answer on 127.0.0.1:$KAFKA_PORT"
  fi
  say "kafka: up on 127.0.0.1:$KAFKA_PORT (Apache Kafka $(kafka_version), KRaft) in $((SECONDS - t0))s"
}

kafka_down() { stop_bg kafka 30; }

kafka_status() {
  if is_running kafka; then
    echo "kafka: running (pid $(cat "$(pidfile kafka)")) on 127.0.0.1:$KAFKA_PORT"
  else
    echo "kafka: stopped"
    return 1
  fi
}

kafka_logs() { tail -n 100 "$KAFKA_DIR/server.log" 2>/dev/null || true; }

kafka_env() { echo "export RTDS_BROKERS=127.0.0.1:$KAFKA_PORT"; }
