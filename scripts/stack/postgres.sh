# PostgreSQL for the stack: the project's own cluster under .stack/postgres,
# 127.0.0.1:5433, database and role `rtds` with a generated password.

PG_PORT=5433
PG_DIR="$STACK_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_PWFILE="$PG_DIR/password"

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && echo "$d"
}

# PostgreSQL refuses to run as root: run it as the `postgres` system user.
pg_as() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

postgres_install() {
  [ -n "$(pg_bin)" ] || apt_ensure postgresql
  [ -n "$(pg_bin)" ] || die "PostgreSQL server binaries not found after installing"
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
  fi
}

# The postgres user must be able to reach $PG_DIR: a clone in a 0700 directory
# (mktemp -d) is not searchable by it. Grant search (o+x, not read) on each
# ancestor that lacks it.
pg_grant_path() {
  [ "$(id -u)" -eq 0 ] || return 0
  mkdir -p "$PG_DIR"
  local d=$PG_DIR
  while [ "$d" != "/" ]; do
    d=$(dirname "$d")
    if ! runuser -u postgres -- test -x "$d"; then
      say "postgres: granting search permission (o+x) on $d so the postgres user can reach .stack"
      chmod o+x "$d"
    fi
  done
  chown postgres: "$PG_DIR"
}

pg_psql_raw() { # as the superuser over the socket
  pg_as "$(pg_bin)/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

# psql as the rtds role over TCP; the password travels in the environment only.
postgres_psql() {
  PGPASSWORD=$(cat "$PG_PWFILE") "$(pg_bin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U rtds -d rtds -v ON_ERROR_STOP=1 "$@"
}

pg_answers() { postgres_psql -qAtc 'SELECT 1' 2>/dev/null | grep -qx 1; }

# TLS on (clients may still connect without it): the stack's server
# certificate, a copy the postgres user owns (it refuses a key others can read).
pg_tls() {
  tls_certs
  mkdir -p "$PG_DIR/tls"
  cp "$TLS_DIR/server.crt" "$TLS_DIR/server.key" "$PG_DIR/tls/"
  chmod 600 "$PG_DIR/tls/server.key"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$PG_DIR/tls"
  grep -q "rtds-tls.conf" "$PG_DATA/postgresql.conf" || echo "include_if_exists = 'rtds-tls.conf'" >>"$PG_DATA/postgresql.conf"
  cat >"$PG_DATA/rtds-tls.conf" <<CONF
ssl = on
ssl_cert_file = '$PG_DIR/tls/server.crt'
ssl_key_file = '$PG_DIR/tls/server.key'
CONF
  [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DATA/rtds-tls.conf"
  return 0
}

pg_init() {
  [ -f "$PG_DATA/PG_VERSION" ] && return 0
  say "postgres: initialising a cluster in $PG_DATA"
  pg_grant_path
  umask 077
  [ -s "$PG_PWFILE" ] || head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$PG_PWFILE"
  chmod 600 "$PG_PWFILE"
  mkdir -p "$PG_DATA"
  chown postgres: "$PG_DATA"
  pg_as "$(pg_bin)/initdb" -D "$PG_DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
  cat >>"$PG_DATA/postgresql.conf" <<CONF
# rtds local stack
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
max_connections = 100
shared_buffers = 128MB
logging_collector = off
include_if_exists = 'rtds-tls.conf'
CONF
  cat >"$PG_DATA/pg_hba.conf" <<CONF
local all postgres peer
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
CONF
  echo 1 >"$PG_DIR/.needs-role"
}

postgres_up() {
  local t0=$SECONDS
  pg_grant_path
  if is_running postgres && pg_answers; then
    say "postgres: already up on 127.0.0.1:$PG_PORT"
    return 0
  fi
  if ! is_running postgres && port_open "$PG_PORT"; then
    die "postgres: 127.0.0.1:$PG_PORT is taken by $(port_owner "$PG_PORT"), not by this stack"
  fi
  pg_init
  pg_tls
  rm -f "$PG_DATA/postmaster.pid.stale"
  if ! is_running postgres; then
    : >"$PG_DIR/postgres.log"
    chown postgres: "$PG_DIR/postgres.log"
    start_bg postgres "$PG_DIR/postgres.log" runuser -u postgres -- "$(pg_bin)/postgres" -D "$PG_DATA"
  fi
  wait_until "postgres socket" 60 pg_as "$(pg_bin)/pg_isready" -q -h "$PG_DIR" -p "$PG_PORT" \
    || { tail -n 30 "$PG_DIR/postgres.log" >&2; die "postgres did not start"; }
  if [ -f "$PG_DIR/.needs-role" ]; then
    local pw
    pw=$(cat "$PG_PWFILE")
    # The password goes through stdin, never argv.
    printf "CREATE ROLE rtds LOGIN PASSWORD '%s';\nCREATE DATABASE rtds OWNER rtds;\n" "$pw" | pg_psql_raw -f - >/dev/null
    rm -f "$PG_DIR/.needs-role"
  fi
  wait_until "postgres SELECT 1" 30 pg_answers || { tail -n 30 "$PG_DIR/postgres.log" >&2; die "postgres does not answer SELECT 1"; }
  say "postgres: up on 127.0.0.1:$PG_PORT (PostgreSQL $(postgres_psql -qAtc 'SHOW server_version'), database rtds) in $((SECONDS - t0))s"
}

postgres_down() {
  if is_running postgres; then
    # Fast shutdown: do not wait for clients to disconnect.
    pg_as "$(pg_bin)/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 30 >/dev/null 2>&1 || true
  fi
  stop_bg postgres 30
}

postgres_status() { service_status postgres "$PG_PORT"; }

postgres_logs() { tail -n 100 "$PG_DIR/postgres.log" 2>/dev/null || true; }

postgres_env() {
  [ -s "$PG_PWFILE" ] || return 0
  echo "export RTDS_POSTGRES_URL=postgres://rtds:$(cat "$PG_PWFILE")@127.0.0.1:$PG_PORT/rtds"
}
