//! TLS to the stores is required when asked for, and verified: the right CA
//! works; a wrong CA, a wrong host name and a server without TLS each fail
//! with a one-line error and exit 1. The local stack's PostgreSQL and
//! Cassandra offer TLS (optional for clients) with certificates of its own CA
//! (.stack/tls, made by scripts/stack/lib.sh).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::*;

const RUN: Duration = Duration::from_secs(90);

fn tls_file(name: &str) -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path =
        std::env::var_os("RTDS_STACK_DIR").map_or_else(|| root.join(".stack"), PathBuf::from).join("tls").join(name);
    assert!(path.exists(), "{} is missing: {START_HINT}", path.display());
    path
}

/// A load that only has to connect to its store: its input topic is new and empty.
fn load(sink: &str) -> Command {
    let mut cmd = rtds();
    cmd.args(["load", "--sink", sink, "--input-topic", &unique("it_tls"), "--keyspace", &unique("it_tls")]).args([
        "--pg-schema",
        &unique("it_tls"),
        "--connect-timeout",
        "5s",
    ]);
    cmd
}

fn postgres_tls(url: &str, ca: &str) -> Output {
    run(
        load("postgres")
            .env("RTDS_POSTGRES_URL", url)
            .env("RTDS_POSTGRES_TLS", "true")
            .env("RTDS_POSTGRES_CA_FILE", tls_file(ca)),
        RUN,
    )
}

fn fails_with(out: &Output, why: &str) {
    assert_one_line_error(out, 1);
    let err = stderr(out);
    assert!(err.lines().last().unwrap().contains(why), "expected {why:?}: {err}");
}

/// The CA file in `ca_variable` is the only one trusted, not one beside the
/// system's: with the server's CA made a system one (OpenSSL's SSL_CERT_FILE)
/// and an unrelated CA in the file, the connection is refused.
fn only_the_ca_file_is_trusted(store: &mut Command, ca_variable: &str) {
    let out = run(store.env("SSL_CERT_FILE", tls_file("ca.crt")).env(ca_variable, tls_file("other-ca.crt")), RUN);
    fails_with(&out, "certificate verify failed");
}

/// Run SQL as PostgreSQL's superuser (over the stack's socket).
fn pg_admin(sql: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let script = format!(
        ". scripts/stack/lib.sh; . scripts/stack/postgres.sh; pg_psql_raw -c \"{sql}\" -c 'SELECT pg_reload_conf()'"
    );
    let status =
        Command::new("bash").arg("-c").arg(format!("ROOT={root}; {script}")).current_dir(root).status().unwrap();
    assert!(status.success(), "{sql}");
}

/// Puts PostgreSQL's TLS back on when dropped, even if the test fails.
struct TlsOff;
impl TlsOff {
    fn new() -> Self {
        pg_admin("ALTER SYSTEM SET ssl = off");
        TlsOff
    }
}
impl Drop for TlsOff {
    fn drop(&mut self) {
        pg_admin("ALTER SYSTEM RESET ssl");
    }
}

#[test]
fn postgres_tls_is_required_and_verified() {
    require_kafka();
    require_postgres();
    // Other tests keep connecting without TLS meanwhile; none asks for it.
    let _stores = stores_exclusive();
    let url = postgres_url();
    let by_name = url.replacen("@127.0.0.1:", "@localhost:", 1);
    let ok = postgres_tls(&by_name, "ca.crt");
    assert!(ok.status.success(), "the right CA: {}", stderr(&ok));
    fails_with(&postgres_tls(&by_name, "other-ca.crt"), "certificate verify failed");
    only_the_ca_file_is_trusted(
        load("postgres").env("RTDS_POSTGRES_URL", &by_name).env("RTDS_POSTGRES_TLS", "true"),
        "RTDS_POSTGRES_CA_FILE",
    );
    // The certificate is for localhost and 127.0.0.1: connect to 127.0.0.1 under another name.
    let wrong_host = format!("{}?hostaddr=127.0.0.1", url.replacen("@127.0.0.1:", "@wronghost.invalid:", 1));
    fails_with(&postgres_tls(&wrong_host, "ca.crt"), "hostname mismatch");
    let off = TlsOff::new();
    fails_with(&postgres_tls(&by_name, "ca.crt"), "server does not support TLS");
    // Without --postgres-tls the same server is used in plaintext, as asked.
    let plain = run(load("postgres").env("RTDS_POSTGRES_URL", &url), RUN);
    assert!(plain.status.success(), "{}", stderr(&plain));
    drop(off);
}

/// A TCP relay on `ip` (a free port) to `target`, byte for byte, for the
/// life of the test process: the TLS session is still the client's with the
/// real server. Its address.
fn relay(ip: &str, target: &str) -> String {
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("binding a relay on {ip}: {e}"));
    let addr = listener.local_addr().unwrap().to_string();
    let target = target.to_owned();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&target) else { continue };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut c, mut s) = (client, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c, &mut s);
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn cassandra_tls_is_verified() {
    require_kafka();
    require_cassandra();
    let _stores = stores_shared();
    let tls = |nodes: &str, ca: &str| {
        run(
            load("cassandra")
                .args(["--cassandra-nodes", nodes])
                .env("RTDS_CASSANDRA_TLS", "true")
                .env("RTDS_CASSANDRA_CA_FILE", tls_file(ca)),
            RUN,
        )
    };
    let node = cassandra_node();
    let ok = tls(&node, "ca.crt");
    assert!(ok.status.success(), "the right CA: {}", stderr(&ok));
    fails_with(&tls(&node, "other-ca.crt"), "certificate verify failed");
    only_the_ca_file_is_trusted(
        load("cassandra").args(["--cassandra-nodes", &node]).env("RTDS_CASSANDRA_TLS", "true"),
        "RTDS_CASSANDRA_CA_FILE",
    );
    // The driver checks a node's certificate against the address it connects
    // to. Reach the same Cassandra through a TCP relay on another loopback
    // address, which its certificate does not name: refused. The same relay on
    // 127.0.0.1, which it names, works (so the relay is not what fails).
    let (host, port) = node.rsplit_once(':').unwrap();
    let target = format!("{host}:{port}");
    let named = tls(&relay("127.0.0.1", &target), "ca.crt");
    assert!(named.status.success(), "through a relay on a named address: {}", stderr(&named));
    fails_with(&tls(&relay("127.0.0.2", &target), "ca.crt"), "certificate verify failed");
    // Cassandra's internode port on the same server speaks no TLS to clients.
    let plain_port = format!("{}:7000", node.rsplit_once(':').unwrap().0);
    fails_with(&tls(&plain_port, "ca.crt"), "connecting to Cassandra at");
}

/// The stack's registry over TLS (scripts/stack/registry.sh, `REGISTRY_TLS_PORT`).
const REGISTRY_TLS: &str = "https://localhost:8443/apis/ccompat/v7";

#[test]
fn registry_tls_is_verified() {
    require_registry();
    let check = |url: &str| {
        let mut cmd = rtds();
        cmd.args(["check", "--only", "registry"]).env("RTDS_SCHEMA_REGISTRY_URL", url);
        cmd
    };
    let ok = run(check(REGISTRY_TLS).env("RTDS_SCHEMA_REGISTRY_CA_FILE", tls_file("ca.crt")), RUN);
    assert!(ok.status.success(), "the right CA: {}", stderr(&ok));
    assert!(stdout(&ok).contains("Apicurio"), "{}", stdout(&ok));
    let wrong = run(check(REGISTRY_TLS).env("RTDS_SCHEMA_REGISTRY_CA_FILE", tls_file("other-ca.crt")), RUN);
    assert!(!wrong.status.success());
    assert!(stdout(&wrong).contains("certificate verify failed"), "{}", stdout(&wrong));
    let mut only = check(REGISTRY_TLS);
    let only = run(
        only.env("SSL_CERT_FILE", tls_file("ca.crt")).env("RTDS_SCHEMA_REGISTRY_CA_FILE", tls_file("other-ca.crt")),
        RUN,
    );
    assert!(stdout(&only).contains("certificate verify failed"), "only the CA file is trusted: {}", stdout(&only));
}
