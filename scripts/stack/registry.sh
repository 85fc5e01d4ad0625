# Apicurio Registry for the stack: a schema registry whose Confluent-compatible REST API
# (/apis/ccompat/v7) answers on 127.0.0.1:8081, its data in the stack's PostgreSQL (schema
# `registry` of database rtds), so it needs postgres up first. The distribution
# (io.apicurio:apicurio-registry-app:3.0.9:tar.gz:all, Apache-2.0; 3.3 needs Java 21) comes from
# Maven Central into the Maven cache, is unpacked once under .stack/registry-app and run with the
# system Java 17. The PostgreSQL password reaches it in its environment only, never in argv.

REGISTRY_VERSION=3.0.9
REGISTRY_PORT=8081
# The same API over TLS (a certificate of the stack's CA, scripts/stack/lib.sh), for the tests.
REGISTRY_TLS_PORT=8443
REGISTRY_DIR="$STACK_DIR/registry"
REGISTRY_APP="$STACK_DIR/registry-app/$REGISTRY_VERSION"
REGISTRY_JAR="$REGISTRY_APP/apicurio-registry-app-$REGISTRY_VERSION-runner.jar"
REGISTRY_SCHEMA=registry
REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
REGISTRY_UP_TIMEOUT=${RTDS_REGISTRY_UP_TIMEOUT:-120}

registry_install() {
  command -v java >/dev/null || apt_ensure openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_ensure maven
  command -v curl >/dev/null || apt_ensure curl
  [ -f "$REGISTRY_JAR" ] && return 0
  local name="apicurio-registry-app-$REGISTRY_VERSION-all.tar.gz" tgz log tmp
  tgz="$M2_REPO/io/apicurio/apicurio-registry-app/$REGISTRY_VERSION/$name"
  if [ ! -s "$tgz" ]; then
    say "registry: fetching Apicurio Registry $REGISTRY_VERSION from Maven Central (first run only)"
    mkdir -p "$STACK_DIR/registry-app"
    log="$STACK_DIR/registry-app/maven.log"
    # dependency:get checks the artifact's checksum and keeps it in the Maven cache.
    mvn -B -Dstyle.color=never -Dmaven.repo.local="$M2_REPO" dependency:get -Dtransitive=false \
      -Dartifact="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all" >"$log" 2>&1 ||
      { grep -E 'ERROR|BUILD' "$log" | head -n 20 >&2; die "registry: maven could not fetch Apicurio Registry $REGISTRY_VERSION (log: $log)"; }
  fi
  # Unpacked beside, then renamed: a half-unpacked copy is never taken for a whole one.
  tmp="$REGISTRY_APP.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  tar -xzf "$tgz" -C "$tmp" || { rm -rf "$tmp"; die "registry: unpacking $tgz failed"; }
  [ -f "$tmp/$(basename "$REGISTRY_JAR")" ] || { rm -rf "$tmp"; die "registry: $tgz holds no $(basename "$REGISTRY_JAR")"; }
  rm -rf "$REGISTRY_APP" && mv "$tmp" "$REGISTRY_APP"
}

registry_answers() { curl -fs -o /dev/null --max-time 5 "$REGISTRY_URL/subjects"; }

# The version the running registry reports (its system info, v3 API).
registry_version() {
  curl -fsS --max-time 5 "http://127.0.0.1:$REGISTRY_PORT/apis/registry/v3/system/info" 2>/dev/null |
    sed -n 's/.*"version" *: *"\([^"]*\)".*/\1/p'
}

registry_up() {
  local t0=$SECONDS deadline
  if is_running registry && registry_answers; then
    say "registry: already up on 127.0.0.1:$REGISTRY_PORT"
    return 0
  fi
  if ! is_running registry && port_open "$REGISTRY_PORT"; then
    die "registry: 127.0.0.1:$REGISTRY_PORT is taken by $(port_owner "$REGISTRY_PORT"), not by this stack"
  fi
  [ -f "$REGISTRY_JAR" ] || registry_install
  tls_certs
  pg_answers || die "registry: needs the stack's PostgreSQL on 127.0.0.1:$PG_PORT: scripts/stack.sh up postgres"
  # Its tables live in a schema of their own (the role rtds may not create databases).
  postgres_psql -qc "SET client_min_messages = warning; CREATE SCHEMA IF NOT EXISTS $REGISTRY_SCHEMA" >/dev/null ||
    die "registry: could not create the schema $REGISTRY_SCHEMA in database rtds"
  mkdir -p "$REGISTRY_DIR"
  if ! is_running registry; then
    # From its own directory: Quarkus reads a .env and config/ in its working directory, and the
    # clone's .env is the compose file's. HTTP, and HTTPS on $REGISTRY_TLS_PORT, on loopback
    # only; no management interface (the Quarkus default, made explicit). A small pool:
    # PostgreSQL allows 100 connections in all.
    # The password is in the environment (APICURIO_DATASOURCE_PASSWORD), not an argument.
    # The C1 compiler only: ready in 5.6 s instead of 7.5-8 s, after 6.9 CPU-s instead of 13.5,
    # 260 MB resident instead of 295 (2 cores, 2026-12-05); a registry serves a few requests.
    (
      cd "$REGISTRY_DIR" &&
        APICURIO_DATASOURCE_PASSWORD=$(cat "$PG_PWFILE") start_bg registry "$REGISTRY_DIR/registry.log" \
          java -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
          -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
          -Dquarkus.management.enabled=false \
          -Dquarkus.http.ssl-port="$REGISTRY_TLS_PORT" -Dquarkus.http.insecure-requests=enabled \
          -Dquarkus.http.ssl.certificate.files="$TLS_DIR/server.crt" \
          -Dquarkus.http.ssl.certificate.key-files="$TLS_DIR/server.key" \
          -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=postgresql \
          -Dapicurio.datasource.url="jdbc:postgresql://127.0.0.1:$PG_PORT/rtds?currentSchema=$REGISTRY_SCHEMA" \
          -Dapicurio.sql.db-schema="$REGISTRY_SCHEMA" \
          -Dapicurio.datasource.username=rtds \
          -Dapicurio.datasource.jdbc.initial-size=1 -Dapicurio.datasource.jdbc.min-size=1 \
          -Dapicurio.datasource.jdbc.max-size=4 \
          -jar "$REGISTRY_JAR"
    )
  fi
  deadline=$((SECONDS + REGISTRY_UP_TIMEOUT))
  until registry_answers; do
    if ! is_running registry || [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$REGISTRY_DIR/registry.log" >&2 2>/dev/null || true
      die "registry: the ccompat API did not answer on $REGISTRY_URL within ${REGISTRY_UP_TIMEOUT}s"
    fi
    sleep 0.5
  done
  say "registry: up on 127.0.0.1:$REGISTRY_PORT (Apicurio Registry $(registry_version), Confluent API /apis/ccompat/v7, PostgreSQL schema $REGISTRY_SCHEMA) in $((SECONDS - t0))s"
}

registry_down() { stop_bg registry 30; }

registry_status() { service_status registry "$REGISTRY_PORT"; }

registry_logs() { tail -n 100 "$REGISTRY_DIR/registry.log" 2>/dev/null || true; }

registry_env() { echo "export RTDS_SCHEMA_REGISTRY_URL=$REGISTRY_URL"; }
