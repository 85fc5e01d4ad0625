# Shared helpers for scripts/stack.sh: pid files, waiting, installing.
# Sourced, not run. Every service file (scripts/stack/<name>.sh) defines
# <name>_install, <name>_up, <name>_down, <name>_status, <name>_logs, <name>_env.

STACK_DIR=${RTDS_STACK_DIR:-$ROOT/.stack}
M2_REPO=${RTDS_M2_REPO:-$HOME/.m2/repository}

say() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

pidfile() { echo "$STACK_DIR/$1/$1.pid"; }

# is_running NAME: true when the pid file names a live process.
is_running() {
  local f pid
  f=$(pidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# service_status NAME PORT: "NAME: running (pid P) on 127.0.0.1:PORT", or stopped and status 1.
service_status() {
  if is_running "$1"; then
    echo "$1: running (pid $(cat "$(pidfile "$1")")) on 127.0.0.1:$2"
  else
    echo "$1: stopped"
    return 1
  fi
}

# start_bg NAME LOGFILE CMD...: start CMD in its own session (setsid) so that
# stop_bg can take down the whole process group; records the pid.
start_bg() {
  local name=$1 log=$2
  shift 2
  mkdir -p "$STACK_DIR/$name"
  setsid "$@" >>"$log" 2>&1 < /dev/null &
  echo $! >"$(pidfile "$name")"
}

# stop_bg NAME [SECONDS]: TERM the process group, KILL it after SECONDS (default 30).
stop_bg() {
  local name=$1 grace=${2:-30} f pid i
  f=$(pidfile "$name")
  [ -f "$f" ] || { say "$name: not started by this stack"; return 0; }
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name: still running after ${grace}s, killing"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Leave no straggler of the group behind.
  pkill -KILL -g "$pid" 2>/dev/null || true
  rm -f "$f"
  say "$name: stopped"
}

# wait_until DESCRIPTION SECONDS CMD...: poll CMD every half second until it
# succeeds; fail with the description after SECONDS.
wait_until() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_owner PORT: "pid N (command)" of the process listening on PORT, when ss can tell.
port_owner() {
  local line pid cmd
  line=$(ss -H -ltnp "sport = :$1" 2>/dev/null | head -n 1) || true
  pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line" | head -n 1)
  if [ -n "$pid" ]; then
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || true
    [ ${#cmd} -le 160 ] || cmd="${cmd:0:50} ... ${cmd: -100}"
    echo "pid $pid ($cmd)"
  else
    echo "another process"
  fi
}

# apt_ensure PKG...: install the Debian packages that are missing.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# maven_classpath POMDIR OUTFILE: resolve the pom's dependencies into the Maven
# cache (once) and write the classpath to OUTFILE.
maven_classpath() {
  local pomdir=$1 out=$2
  if [ -s "$out" ] && [ "$out" -nt "$pomdir/pom.xml" ]; then return 0; fi
  mkdir -p "$(dirname "$out")"
  say "resolving jars for $(basename "$pomdir") from Maven Central (first run only)"
  local log="${out%.txt}.maven.log"
  if ! mvn -B -Dstyle.color=never -f "$pomdir/pom.xml" -Dmaven.repo.local="$M2_REPO" \
    dependency:build-classpath -Dmdep.outputFile="$out" >"$log" 2>&1; then
    grep -E 'ERROR|BUILD' "$log" | head -n 20 >&2
    rm -f "$out"
    die "maven could not resolve $pomdir/pom.xml (log: $log)"
  fi
}

# TLS for the stack's PostgreSQL and Cassandra (both also accept plaintext):
# a CA of the stack's own, a server certificate for `localhost` and 127.0.0.1
# (the scylla driver checks a node's certificate against the node's address),
# a second, unrelated CA (a wrong CA for the tests), and the server key and
# certificate as a PKCS12 keystore for Cassandra with a generated password.
# Made once, under .stack/tls.
TLS_DIR="$STACK_DIR/tls"
tls_certs() {
  [ -s "$TLS_DIR/server.p12" ] && return 0
  command -v openssl >/dev/null || apt_ensure openssl
  mkdir -p "$TLS_DIR"
  (
    umask 077
    cd "$TLS_DIR"
    for ca in ca other-ca; do
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=rtds local $ca" \
        -keyout "$ca.key" -out "$ca.crt" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.crt 2>/dev/null
    head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >server.p12.password
    openssl pkcs12 -export -inkey server.key -in server.crt -name server -passout "file:server.p12.password" \
      -out server.p12.tmp && mv server.p12.tmp server.p12
    chmod 644 ca.crt other-ca.crt server.crt
  ) || die "creating the stack's TLS certificates in $TLS_DIR failed"
}
