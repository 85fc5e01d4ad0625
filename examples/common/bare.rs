//! What the bare baselines share: a plain rdkafka producer with rtds' producer
//! settings (so a comparison measures rtds, not different settings), a send
//! that waits while the local queue is full, and a consumer that reads a topic
//! to its end. BARE_KAFKA_OPTIONS="key=value,key=value" adds librdkafka settings
//! to both, to try others by hand (the bench leaves it unset).
#![allow(dead_code)] // each example uses what it needs

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rtds::kafka::Profile;

pub type Producer = ThreadedProducer<DefaultProducerContext>;

pub fn producer(brokers: &str) -> anyhow::Result<Producer> {
    Ok(config(brokers)?.create()?)
}

/// rtds' producer settings, for any kind of rdkafka producer.
pub fn config(brokers: &str) -> anyhow::Result<ClientConfig> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers).set("compression.type", "lz4");
    for (k, v) in rtds::kafka::PRODUCER_DEFAULTS {
        cfg.set(*k, *v);
    }
    // At full speed batches fill before any linger ends; the stages' shorter one, as before.
    cfg.set("linger.ms", rtds::kafka::LINGER_BATCH.as_millis().to_string());
    with_options(cfg)
}

/// `cfg` with the settings of BARE_KAFKA_OPTIONS over it.
fn with_options(mut cfg: ClientConfig) -> anyhow::Result<ClientConfig> {
    for kv in std::env::var("BARE_KAFKA_OPTIONS").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
        let (k, v) = rtds::validate::parse_key_value(kv).map_err(|e| anyhow::anyhow!("BARE_KAFKA_OPTIONS: {e}"))?;
        cfg.set(k, v);
    }
    Ok(cfg)
}

pub fn send(producer: &Producer, mut record: BaseRecord<'_, [u8], [u8]>) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => anyhow::bail!("send: {e}"),
        }
    }
}

/// CPU seconds this process has used so far, user and system: fields 14 and
/// 15 of /proc/self/stat, in clock ticks of 1/100 s (USER_HZ, fixed by Linux's ABI).
pub fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // After the command name, in parentheses (it may hold spaces), field 3 comes first.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |field: usize| -> anyhow::Result<f64> {
        Ok(fields.get(field - 3).ok_or_else(|| anyhow::anyhow!("short /proc/self/stat"))?.parse::<f64>()?)
    };
    Ok((ticks(14)? + ticks(15)?) / 100.0)
}

/// A consumer in `group` subscribed to `topic` from its start, and its number
/// of partitions. It prefetches as the rtds stage of `profile` does (librdkafka's
/// defaults pause fetching for a second whenever its 100,000-record queue is full).
pub fn consumer(brokers: &str, group: &str, topic: &str, profile: &Profile) -> anyhow::Result<(BaseConsumer, usize)> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true");
    for (k, v) in rtds::kafka::prefetch_settings(profile.prefetch_mb) {
        cfg.set(k, v);
    }
    let consumer: BaseConsumer = with_options(cfg)?.create()?;
    let partitions = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?.topics()[0].partitions().len();
    consumer.subscribe(&[topic])?;
    Ok((consumer, partitions))
}

/// Every record, to the end of each of the `partitions`, through `each`.
pub fn read_to_end(
    consumer: &BaseConsumer,
    partitions: usize,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut eof = HashSet::new();
    while eof.len() < partitions {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => anyhow::bail!("consume: {e}"),
            Some(Ok(m)) => each(&m)?,
        }
    }
    Ok(())
}

/// Create `topic` with `partitions` (replication 1: the bench's single node) unless it exists.
pub fn create_topic(brokers: &str, topic: &str, partitions: usize) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new = NewTopic::new(topic, i32::try_from(partitions)?, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}
