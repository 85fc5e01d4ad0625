//! Helpers shared by the integration tests: unique names per test, the real
//! services (failing with how to start them when absent), waiting with a
//! deadline, and running the `rtds` binary.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const START_HINT: &str = "run `make stack-up` (scripts/stack.sh up)";

/// A name no other test (or earlier run) uses: `prefix_<pid>_<n>_<time>`,
/// valid as a Kafka topic, a Cassandra keyspace and a PostgreSQL schema.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 100_000_000;
    format!("{prefix}_{}_{n}_{t}", std::process::id())
}

pub fn brokers() -> String {
    std::env::var("RTDS_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn cassandra_node() -> String {
    std::env::var("RTDS_CASSANDRA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

pub fn postgres_url() -> String {
    std::env::var("RTDS_POSTGRES_URL")
        .unwrap_or_else(|_| panic!("RTDS_POSTGRES_URL is not set: {START_HINT} and eval \"$(scripts/stack.sh env)\""))
}

/// Panic with the start hint unless `addr` accepts TCP connections.
pub fn require(service: &str, addr: &str) {
    let reachable = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok());
    assert!(reachable, "{service} is not reachable at {addr}: {START_HINT}");
}

pub fn require_kafka() -> String {
    let b = brokers();
    require("Kafka", b.split(',').next().unwrap());
    b
}

pub fn require_cassandra() -> String {
    let n = cassandra_node();
    require("Cassandra", &n);
    n
}

pub fn require_postgres() -> String {
    let url = postgres_url();
    require("PostgreSQL", "127.0.0.1:5433");
    url
}

/// The schema registry's Confluent-compatible URL (scripts/stack.sh env), once it answers.
pub fn require_registry() -> String {
    let url = std::env::var("RTDS_SCHEMA_REGISTRY_URL").unwrap_or_else(|_| {
        panic!("RTDS_SCHEMA_REGISTRY_URL is not set: {START_HINT} and eval \"$(scripts/stack.sh env)\"")
    });
    let host = url.split("//").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default().to_owned();
    require("the schema registry", &host);
    url
}

/// Poll `f` until it returns `Some`, or panic naming `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `rtds` binary with a clean RTDS_* environment except the stack's addresses:
/// this build's, or RTDS_IT_BIN's (`make faults` runs its cluster scenarios with
/// the release build, for the figures a user gets).
pub fn rtds() -> Command {
    let bin = std::env::var_os("RTDS_IT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rtds").into());
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("RTDS_")
            && !matches!(
                k.as_str(),
                "RTDS_BROKERS" | "RTDS_CASSANDRA_NODES" | "RTDS_POSTGRES_URL" | "RTDS_SCHEMA_REGISTRY_URL"
            )
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Run and capture, with a deadline so a hang fails the test instead of the suite.
pub fn run(cmd: &mut Command, deadline: Duration) -> Output {
    wait_child(spawn(cmd), deadline)
}

/// Threads reading a child's stdout and stderr from its start, by pid: a
/// stage that writes more than a pipe holds never blocks on it.
type Drains = (std::thread::JoinHandle<Vec<u8>>, std::thread::JoinHandle<Vec<u8>>);
static DRAINS: std::sync::Mutex<Option<std::collections::HashMap<u32, Drains>>> = std::sync::Mutex::new(None);

fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// What a child wrote, once it has exited (its pipes closed).
fn collected(child: &std::process::Child) -> (Vec<u8>, Vec<u8>) {
    let drains = DRAINS.lock().unwrap_or_else(|e| e.into_inner()).as_mut().and_then(|d| d.remove(&child.id()));
    drains.map_or_else(Default::default, |(o, e)| (o.join().unwrap_or_default(), e.join().unwrap_or_default()))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON summary: the last line on stdout.
pub fn summary(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    let last = out.lines().last().unwrap_or_else(|| panic!("no stdout; stderr: {}", stderr(o)));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {last}"))
}

/// A one-line error: stderr has exactly one line, starting with "error:".
pub fn assert_one_line_error(o: &Output, code: i32) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "exit code; stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(lines.last().is_some_and(|l| l.starts_with("error:")), "no error line last: {err}");
    if code == 2 {
        assert_eq!(lines.len(), 1, "a usage error is one line: {err}");
    }
}

/// A Tokio runtime for tests that talk to the stores with async drivers; keep it
/// alive as long as the clients made on it.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A scylla session to the local Cassandra; its tasks run on `rt`.
pub fn cassandra(rt: &tokio::runtime::Runtime) -> scylla::client::session::Session {
    let node = require_cassandra();
    rt.block_on(async {
        scylla::client::session_builder::SessionBuilder::new()
            .known_node(&node)
            .connection_timeout(Duration::from_secs(10))
            .build()
            .await
            .unwrap_or_else(|e| panic!("connecting to Cassandra at {node}: {e}: {START_HINT}"))
    })
}

/// A PostgreSQL client; the connection task runs on `rt`.
pub fn postgres(rt: &tokio::runtime::Runtime) -> tokio_postgres::Client {
    let url = require_postgres();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to PostgreSQL: {e}: {START_HINT}"));
        tokio::spawn(conn);
        client
    })
}

/// A reader of a topic from its beginning as a load sees it (read_committed),
/// in a group of its own that commits nothing.
pub fn reader_config() -> rdkafka::ClientConfig {
    let mut cfg = rdkafka::ClientConfig::new();
    cfg.set("bootstrap.servers", brokers())
        .set("group.id", unique("it_reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    cfg
}

/// Every record of `topic` from the beginning, until `n` arrived (panics after `deadline`).
pub fn consume(topic: &str, n: usize, deadline: Duration) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let consumer: BaseConsumer = reader_config().create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut got = Vec::with_capacity(n);
    let start = Instant::now();
    while got.len() < n {
        assert!(start.elapsed() < deadline, "only {} of {n} records arrived in {topic}", got.len());
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            got.push(m.expect("consume").detach());
        }
    }
    // Nothing more than n should be there.
    if let Some(Ok(extra)) = consumer.poll(Duration::from_millis(500)) {
        panic!("more than {n} records in {topic}: offset {} of partition {}", extra.offset(), extra.partition());
    }
    got
}

/// Every record of `topic` (read_committed), however many: read until each
/// partition's end. For figures that count what is lost or duplicated, where
/// `consume` would fail on the first record too many or too few.
pub fn read_all(topic: &str, deadline: Duration) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    let consumer: BaseConsumer = reader_config().set("enable.partition.eof", "true").create().unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions: Vec<i32> = md.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut open: HashSet<i32> = partitions.into_iter().collect();
    let mut got = Vec::new();
    let start = Instant::now();
    while !open.is_empty() {
        assert!(start.elapsed() < deadline, "{topic}: partitions {open:?} not read to their end in {deadline:?}");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push(m.detach()),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    got
}

/// A transactional producer of the test's own (`name` makes its id unique), its transactions initialised.
pub fn transactional_producer(name: &str) -> rdkafka::producer::BaseProducer {
    use rdkafka::producer::Producer;
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("transactional.id", unique(name))
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer
}

/// Records in `topic` (sum of high watermarks; 0 if the topic does not exist).
pub fn topic_len(topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let Some(t) = md.topics().first() else { return 0 };
    t.partitions()
        .iter()
        .map(|p| consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).map(|(lo, hi)| hi - lo).unwrap_or(0))
        .sum()
}

/// Delete `topics` from the cluster `brokers()` names (a long scenario's topics would otherwise
/// pile up and lengthen every later broker restart's log recovery).
pub fn delete_topics(topics: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    runtime().block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
        for r in admin.delete_topics(topics, &AdminOptions::new()).await.unwrap() {
            r.unwrap_or_else(|(t, e)| panic!("deleting topic {t}: {e}"));
        }
    });
}

/// `group`'s committed offset in each of partitions `0..partitions` of `topic` (the next it
/// reads), `None` where it committed none; `wait` bounds the wait for offsets an open
/// transaction holds "unstable".
pub fn committed(group: &str, topic: &str, partitions: i32, wait: Duration) -> Vec<Option<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).set("group.id", group).create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let tpl = consumer.committed_offsets(tpl, wait).unwrap();
    (0..partitions)
        .map(|p| match tpl.find_partition(topic, p).map(|e| e.offset()) {
            Some(rdkafka::Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// The value of header `name` of a message, as text.
pub fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::{Headers, Message};
    let headers = m.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A fixture file's content.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Create `topic` (3 partitions) and produce `records` (key, payload) to it, waiting for every ack.
/// A record to produce in a test: (key, payload), either absent.
pub type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

pub fn produce(topic: &str, records: &[Record<'_>]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let rt = runtime();
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
        admin
            .create_topics([&NewTopic::new(topic, 3, TopicReplication::Fixed(1))], &AdminOptions::new())
            .await
            .unwrap();
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("message.max.bytes", "16000000")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let sends = records.iter().map(|(k, p)| {
            let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
            if let Some(k) = k {
                r = r.key(*k);
            }
            if let Some(p) = p {
                r = r.payload(*p);
            }
            producer.send(r, Duration::from_secs(30))
        });
        for result in futures::future::join_all(sends).await {
            result.expect("delivery");
        }
    });
}

/// Start `rtds` in the background, its stdout and stderr read as it goes
/// (`wait_child` hands them over).
pub fn spawn(cmd: &mut Command) -> std::process::Child {
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn rtds");
    let drains = (drain(child.stdout.take()), drain(child.stderr.take()));
    DRAINS.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_default().insert(child.id(), drains);
    child
}

/// Tests that use a store hold this shared; a test that stops a store holds it
/// exclusively, so no other test sees the outage.
pub static STORES: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn stores_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    STORES.read().unwrap_or_else(|e| e.into_inner())
}

pub fn stores_exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    STORES.write().unwrap_or_else(|e| e.into_inner())
}

/// Run `scripts/stack.sh ARGS` (to stop and start a service in a fault test).
pub fn stack(args: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/stack.sh");
    let status = Command::new(script).args(args).status().expect("run scripts/stack.sh");
    assert!(status.success(), "scripts/stack.sh {args:?} failed");
}

/// Send SIGTERM (graceful stop) to a child.
pub fn terminate(child: &std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Wait for a child with a deadline, and what it wrote; kill it and panic if it does not exit.
pub fn wait_child(mut child: std::process::Child, deadline: Duration) -> Output {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait rtds") {
            let (stdout, stderr) = collected(&child);
            return Output { status, stdout, stderr };
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (_, stderr) = collected(&child);
            panic!("rtds did not finish within {deadline:?}\nstderr: {}", String::from_utf8_lossy(&stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET http://addr/metrics (a stage's --metrics-addr), as text.
pub fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The value of the metric line that starts with `name` (with its labels) in a scrape.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines().find(|l| l.starts_with(name))?.rsplit(' ').next()?.parse().ok()
}

/// A loopback address with a port free now, for a stage's --metrics-addr.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}
