//! Kafka for every stage: client configuration (brokers, user settings, secrets
//! from files), the producer settings of DESIGN.md, topic creation and the
//! cluster probe of `rtds check`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::cli::{Compression, GlobalOpts};
use crate::error::usage;

/// How long a metadata request or topic creation may take before we call the
/// cluster unreachable.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Our producer defaults (DESIGN.md): idempotent, acks=all, keyed partitioning
/// (murmur2, as the Java client), batched for throughput.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "10"),
    ("batch.size", "1000000"),
    ("batch.num.messages", "10000"),
    ("queue.buffering.max.messages", "500000"),
    ("queue.buffering.max.kbytes", "1048576"),
    ("message.timeout.ms", "120000"),
    ("partitioner", "murmur2_random"),
];

/// A client configuration: brokers, then `defaults`, then the settings file,
/// then `--kafka-option`s (later ones win, so users can override anything).
pub fn client_config(global: &GlobalOpts, defaults: &[(&str, &str)]) -> Result<ClientConfig> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &global.brokers)
        .set("client.id", "rtds")
        .set("socket.connection.setup.timeout.ms", "10000");
    for (k, v) in defaults {
        cfg.set(*k, *v);
    }
    if let Some(path) = &global.kafka_config {
        for (k, v) in read_settings_file(path)? {
            cfg.set(k, v);
        }
    }
    for (k, v) in &global.kafka_options {
        cfg.set(k, v);
    }
    Ok(cfg)
}

/// A `key=value` a line file; blank lines and `#` comments skipped.
fn read_settings_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return usage(format!("cannot read Kafka settings file {}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match crate::names::parse_key_value(line) {
            Ok(kv) => out.push(kv),
            Err(_) => {
                return usage(format!("{}:{}: expected key=value", path.display(), n + 1));
            }
        }
    }
    Ok(out)
}

/// Delivery reports, counted: after a flush, `delivered + failed` equals what was sent.
#[derive(Debug, Default)]
pub struct Deliveries {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Deliveries {
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Acquire)
    }
    /// The first delivery error seen, for the failure message.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }
}

/// Producer context that counts delivery reports.
pub struct Counting(pub Arc<Deliveries>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::AcqRel);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::AcqRel);
                if let Ok(mut first) = self.0.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

pub type Producer = ThreadedProducer<Counting>;

/// A producer with DESIGN.md's delivery settings: idempotent, acks=all,
/// compressed, keyed partitioning, batched for throughput. Its delivery reports
/// are counted in the returned `Deliveries`.
pub fn producer(global: &GlobalOpts, compression: Compression) -> Result<(Producer, Arc<Deliveries>)> {
    let mut defaults = PRODUCER_DEFAULTS.to_vec();
    defaults.push(("compression.type", compression.as_librdkafka()));
    let deliveries = Arc::new(Deliveries::default());
    let producer = client_config(global, &defaults)?
        .create_with_context(Counting(deliveries.clone()))
        .with_context(|| format!("creating a Kafka producer for {}", global.brokers))?;
    Ok((producer, deliveries))
}

/// Hand one record to the producer, waiting while its local queue is full
/// (back-pressure instead of an error).
pub async fn send(producer: &Producer, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((e, r)) => anyhow::bail!("producing to topic {}: {e}", r.topic),
        }
    }
}

/// Wait until every record handed to the producer has its delivery report.
/// Returns an error if the reports are not all in after `timeout`.
pub fn flush(producer: &Producer, timeout: Duration) -> Result<()> {
    tokio::task::block_in_place(|| producer.flush(timeout))
        .with_context(|| format!("waiting for Kafka to acknowledge {} record(s)", producer.in_flight_count()))
}

/// The standard headers of a record: (name, value) pairs.
pub fn headers(pairs: &[(&str, &[u8])]) -> OwnedHeaders {
    pairs
        .iter()
        .fold(OwnedHeaders::new_with_capacity(pairs.len()), |h, (k, v)| h.insert(Header { key: k, value: Some(*v) }))
}

/// Create `topic` if it does not exist; an existing topic is left as it is.
pub async fn ensure_topic(global: &GlobalOpts, topic: &str, partitions: i32, replication: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(global, &[])?.create().context("creating a Kafka admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let opts = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)).request_timeout(Some(METADATA_TIMEOUT));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .with_context(|| format!("creating topic {topic} on Kafka at {}", global.brokers))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, replication, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                anyhow::bail!("creating topic {name} on Kafka at {}: {code}", global.brokers)
            }
        }
    }
    Ok(())
}

/// What `rtds check` reports about the cluster.
#[derive(Debug, serde::Serialize)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub brokers: Vec<String>,
    pub topics: usize,
    /// Kafka does not reveal its version over the protocol; this is our client's.
    pub client: String,
}

/// Ask the cluster for its metadata, within `METADATA_TIMEOUT`.
pub async fn cluster_info(global: &GlobalOpts) -> Result<ClusterInfo> {
    let cfg = client_config(global, &[])?;
    let brokers = global.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = cfg.create().context("creating a Kafka client")?;
        let md = consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .with_context(|| format!("connecting to Kafka at {brokers}"))?;
        let (_, version) = rdkafka::util::get_rdkafka_version();
        Ok(ClusterInfo {
            cluster_id: consumer.client().fetch_cluster_id(METADATA_TIMEOUT),
            brokers: md.brokers().iter().map(|b| format!("{}:{} (id {})", b.host(), b.port(), b.id())).collect(),
            topics: md.topics().iter().filter(|t| !t.name().starts_with("__")).count(),
            client: format!("librdkafka {version}"),
        })
    })
    .await?
}
