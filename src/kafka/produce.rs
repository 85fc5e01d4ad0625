//! Producing with our delivery settings (`PRODUCER_DEFAULTS`); each delivery
//! report goes to the batch the record was sent under and to the run's
//! `Deliveries` (`reports`; the delivery rule itself is in `crate::delivery`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use super::client_config;
use super::{ClientOpts, Compression};
use crate::delivery::{BatchAck, Deliveries};

/// Our producer defaults (docs/ARCHITECTURE.md): idempotent, acks=all, keyed partitioning
/// (murmur2, as the Java client), batched for throughput.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("batch.size", "1000000"),
    ("batch.num.messages", "10000"),
    // The local queue bounds memory (records wait here until acknowledged); a
    // full queue makes `send` wait, which is the back-pressure we want. It
    // must stay >= message.max.bytes, or a record that large never fits.
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "16384"),
    ("message.timeout.ms", "120000"),
    // Room for the largest record a DLQ must carry back (as the local broker allows).
    ("message.max.bytes", "16777216"),
    ("partitioner", "murmur2_random"),
];

/// How long a record waits for others to share its produce request (a
/// request per partition): `linger.ms`, by how the records come.
/// A consuming stage sends a batch's outputs at once, so they need only the
/// moment it takes to hand them over; each ms more is a ms of every hop's
/// latency (bench/README.md, "Transactions that waited 100 ms").
pub const LINGER_BATCH: Duration = Duration::from_millis(1);
/// How long a streamed record may wait to be sent with others, unless
/// `ingest --linger` says otherwise: a paced ingest sends each window this
/// long at once (its producer lingers `LINGER_BATCH`), an unpaced one
/// lingers this. At 1,000 records/s the broker then gets 40 windows a
/// second instead of a produce request a record, and every stage
/// downstream reads a window as one batch; a record's latency grows by half
/// of it on average (bench/README.md, "Cheap at the rates users run", "One
/// batch a window").
pub const LINGER_STREAM: Duration = Duration::from_millis(25);

/// How long a transactional producer waits before it asks again a
/// coordinator still finishing the transaction before (`retry.backoff.ms`,
/// librdkafka's 100 ms otherwise for the consumed offsets; its own 20 for the
/// partitions). A stage commits a transaction a batch when caught up, so the
/// next one's offsets can come while the last one's markers are written.
pub const RETRY_BACKOFF_TXN: Duration = Duration::from_millis(20);

pub use super::reports::{Counting, Producer};

/// A transactional producer's id, and how long one of its transactions may stay open.
pub struct Transactional<'a> {
    pub id: &'a str,
    pub timeout: Duration,
}

impl Transactional<'_> {
    /// The producer settings of a transaction: its id and timeout, a delivery
    /// no longer than it (librdkafka requires message.timeout.ms <=
    /// transaction.timeout.ms, and 60 s is plenty), retries of a busy
    /// coordinator `RETRY_BACKOFF_TXN` apart.
    pub fn settings(&self) -> [(&'static str, String); 4] {
        let ms = |d: Duration| d.as_millis().to_string();
        [
            ("transactional.id", self.id.to_string()),
            ("transaction.timeout.ms", ms(self.timeout)),
            ("message.timeout.ms", ms(self.timeout.min(Duration::from_secs(60)))),
            ("retry.backoff.ms", ms(RETRY_BACKOFF_TXN)),
        ]
    }
}

/// A producer with our delivery settings (docs/ARCHITECTURE.md): idempotent, acks=all,
/// compressed, keyed partitioning, batched as `linger` says. Its delivery reports
/// are counted in the returned `Deliveries`. With a `transactional_id` the
/// producer is transactional, its transactions initialised.
pub fn producer(
    client: &ClientOpts,
    compression: Compression,
    linger: Duration,
    transactional: Option<Transactional<'_>>,
) -> Result<(Producer, Arc<Deliveries>)> {
    let mut defaults = PRODUCER_DEFAULTS.to_vec();
    defaults.push(("compression.type", compression.as_librdkafka()));
    let linger = linger.as_millis().to_string();
    defaults.push(("linger.ms", &linger));
    let txn = transactional.as_ref().map(Transactional::settings);
    defaults.extend(txn.iter().flatten().map(|(k, v)| (*k, v.as_str())));
    let deliveries = Arc::new(Deliveries::default());
    let producer = Producer::create(&client_config(client, &defaults)?, Counting(deliveries.clone()))
        .with_context(|| format!("creating a Kafka producer for {}", client.brokers))?;
    // Connect now: otherwise the first records wait for the connection, the
    // metadata and the producer id.
    tokio::task::block_in_place(|| producer.client().fetch_metadata(None, super::METADATA_TIMEOUT))
        .with_context(|| format!("connecting to Kafka at {}", client.brokers))?;
    if transactional.is_some() {
        tokio::task::block_in_place(|| producer.init_transactions(Duration::from_secs(30)))
            .with_context(|| format!("initialising Kafka transactions on {}", client.brokers))?;
    }
    Ok((producer, deliveries))
}

/// A record whose delivery report is counted under a `BatchAck`.
pub type AckedRecord<'a> = BaseRecord<'a, [u8], [u8], Arc<BatchAck>>;

/// Hand one record to the producer, waiting while its local queue is full
/// (back-pressure instead of an error). Its report is counted under `batch`.
pub async fn send(producer: &Producer, batch: &Arc<BatchAck>, record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    let mut record = acked(batch, record);
    while let Some(full) = offer(producer, batch, record)? {
        record = full;
        tokio::time::sleep(QUEUE_FULL_WAIT).await;
    }
    Ok(())
}

/// `send` for a caller off the async runtime (a blocking read's callback).
pub fn send_blocking(producer: &Producer, batch: &Arc<BatchAck>, record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    let mut record = acked(batch, record);
    while let Some(full) = offer(producer, batch, record)? {
        record = full;
        std::thread::sleep(QUEUE_FULL_WAIT);
    }
    Ok(())
}

/// How long a send waits for room in a full local queue before it tries again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(2);

fn acked<'a>(batch: &Arc<BatchAck>, record: BaseRecord<'a, [u8], [u8]>) -> AckedRecord<'a> {
    batch.sending();
    BaseRecord {
        topic: record.topic,
        partition: record.partition,
        payload: record.payload,
        key: record.key,
        timestamp: record.timestamp,
        headers: record.headers,
        delivery_opaque: batch.clone(),
    }
}

/// Hand `record` to the producer: back if its queue is full, an error (counted
/// under `batch`) if it cannot be sent at all.
fn offer<'a>(producer: &Producer, batch: &Arc<BatchAck>, record: AckedRecord<'a>) -> Result<Option<AckedRecord<'a>>> {
    match producer.send(record) {
        Ok(()) => Ok(None),
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => Ok(Some(r)),
        Err((e, r)) => {
            let why = format!("producing to topic {}: {e}", r.topic);
            batch.reported(Err(why.clone()));
            anyhow::bail!(why)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(t: &Transactional<'_>, key: &str) -> u64 {
        t.settings().iter().find(|(k, _)| *k == key).map(|(_, v)| v.parse().unwrap()).unwrap()
    }

    #[test]
    fn a_delivery_never_outlasts_its_transaction() {
        for secs in [1, 10, 60, 900] {
            let t = Transactional { id: "t", timeout: Duration::from_secs(secs) };
            assert_eq!(setting(&t, "transaction.timeout.ms"), secs * 1000);
            assert_eq!(setting(&t, "message.timeout.ms"), secs.min(60) * 1000);
        }
    }
}
