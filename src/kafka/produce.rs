//! Producing with DESIGN.md's delivery settings, counting delivery reports so a
//! stage knows, after a flush, that every record it sent was acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::client_config;
use crate::cli::{Compression, GlobalOpts};
use crate::stage::Counts;

/// Our producer defaults (DESIGN.md): idempotent, acks=all, keyed partitioning
/// (murmur2, as the Java client), batched for throughput.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "10"),
    ("batch.size", "1000000"),
    ("batch.num.messages", "10000"),
    // The local queue bounds memory (records wait here until acknowledged); a
    // full queue makes `send` wait, which is the back-pressure we want. 16 MB
    // keeps a 1M-record ingest as fast as 64 MB did, at 70 MB peak RSS instead of
    // 165; it must stay >= message.max.bytes, or a record that large never fits.
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "16384"),
    ("message.timeout.ms", "120000"),
    // Room for the largest record a DLQ must carry back (the local broker allows 16 MB).
    ("message.max.bytes", "16777216"),
    ("partitioner", "murmur2_random"),
];

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

/// The delivery reports of one group of records (a consumed batch's outputs):
/// the batch may be committed once every record sent under it is acknowledged,
/// and every `Hold` on it (an output that is not a Kafka record, such as a
/// store write still running) is released.
#[derive(Debug, Default)]
pub struct BatchAck {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    holds: AtomicU64,
    /// What released holds reported: records out, dead-lettered, filtered.
    late_out: AtomicU64,
    late_dlq: AtomicU64,
    late_filtered: AtomicU64,
    error: Mutex<Option<String>>,
}

impl BatchAck {
    /// Every record sent under this ack has its delivery report, every hold is released.
    pub fn complete(&self) -> bool {
        self.holds.load(Ordering::Acquire) == 0
            && self.acked.load(Ordering::Acquire) >= self.sent.load(Ordering::Acquire)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Acquire)
    }
    /// Some output is still being written by its owner (which has its own deadline).
    pub fn holding(&self) -> bool {
        self.holds.load(Ordering::Acquire) > 0
    }
    /// Why a hold failed, if one did.
    pub fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }
    /// What released holds reported.
    pub fn late_counts(&self) -> Counts {
        Counts {
            out: self.late_out.load(Ordering::Acquire),
            dlq: self.late_dlq.load(Ordering::Acquire),
            filtered: self.late_filtered.load(Ordering::Acquire),
        }
    }
    /// Keep the batch uncommitted until the returned hold is released.
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.holds.fetch_add(1, Ordering::AcqRel);
        Hold { ack: self.clone(), live: true }
    }
}

/// Outputs of a batch made elsewhere (on a stage's worker task). A hold
/// dropped without `release` fails the batch: it is never committed.
#[derive(Debug)]
pub struct Hold {
    ack: Arc<BatchAck>,
    /// Still counted in `ack.holds` (until released or failed).
    live: bool,
}

impl Hold {
    /// The batch this hold keeps uncommitted: its other outputs (DLQ records)
    /// are sent under it.
    pub fn ack(&self) -> &Arc<BatchAck> {
        &self.ack
    }
    /// The outputs are made: what they were (records sent under the batch's
    /// ack are still awaited).
    pub fn release(mut self, counts: Counts) {
        self.ack.late_out.fetch_add(counts.out, Ordering::AcqRel);
        self.ack.late_dlq.fetch_add(counts.dlq, Ordering::AcqRel);
        self.ack.late_filtered.fetch_add(counts.filtered, Ordering::AcqRel);
        self.ack.holds.fetch_sub(1, Ordering::AcqRel);
        self.live = false;
    }
    /// The output could not be written: the batch stays uncommitted.
    pub fn fail(mut self, why: String) {
        self.failing(why);
    }
    fn failing(&mut self, why: String) {
        if let Ok(mut e) = self.ack.error.lock() {
            e.get_or_insert(why);
        }
        self.ack.failed.fetch_add(1, Ordering::AcqRel);
        self.ack.holds.fetch_sub(1, Ordering::AcqRel);
        self.live = false;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.live {
            self.failing("an output of the batch was abandoned before it was written".into());
        }
    }
}

/// Producer context that counts delivery reports, in total and per batch.
pub struct Counting(pub Arc<Deliveries>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = Arc<BatchAck>;
    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<BatchAck>) {
        if result.is_err() {
            batch.failed.fetch_add(1, Ordering::AcqRel);
        }
        batch.acked.fetch_add(1, Ordering::AcqRel);
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
/// are counted in the returned `Deliveries`. With a `transactional_id` the
/// producer is transactional, its transactions initialised.
pub fn producer(
    global: &GlobalOpts,
    compression: Compression,
    transactional_id: Option<&str>,
) -> Result<(Producer, Arc<Deliveries>)> {
    let mut defaults = PRODUCER_DEFAULTS.to_vec();
    defaults.push(("compression.type", compression.as_librdkafka()));
    if let Some(id) = transactional_id {
        defaults.push(("transactional.id", id));
        defaults.push(("transaction.timeout.ms", "60000"));
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        defaults.push(("message.timeout.ms", "60000"));
    }
    let deliveries = Arc::new(Deliveries::default());
    let producer: Producer = client_config(global, &defaults)?
        .create_with_context(Counting(deliveries.clone()))
        .with_context(|| format!("creating a Kafka producer for {}", global.brokers))?;
    // Connect now: otherwise the first records wait for the connection, the
    // metadata and the producer id (~0.5 s, the whole p99 of a 60 s run at 1,000/s).
    tokio::task::block_in_place(|| producer.client().fetch_metadata(None, super::METADATA_TIMEOUT))
        .with_context(|| format!("connecting to Kafka at {}", global.brokers))?;
    if transactional_id.is_some() {
        tokio::task::block_in_place(|| producer.init_transactions(Duration::from_secs(30)))
            .with_context(|| format!("initialising Kafka transactions on {}", global.brokers))?;
    }
    Ok((producer, deliveries))
}

/// A record whose delivery report is counted under a `BatchAck`.
pub type Record<'a> = BaseRecord<'a, [u8], [u8], Arc<BatchAck>>;

/// Hand one record to the producer, waiting while its local queue is full
/// (back-pressure instead of an error). Its report is counted under `batch`.
pub async fn send(producer: &Producer, batch: &Arc<BatchAck>, record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    let mut record: Record<'_> = BaseRecord {
        topic: record.topic,
        partition: record.partition,
        payload: record.payload,
        key: record.key,
        timestamp: record.timestamp,
        headers: record.headers,
        delivery_opaque: batch.clone(),
    };
    batch.sent.fetch_add(1, Ordering::AcqRel);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_waits_for_its_holds_and_counts_what_they_report() {
        let ack = Arc::new(BatchAck::default());
        assert!(ack.complete(), "nothing sent, nothing held");
        let hold = ack.hold();
        assert!(!ack.complete() && ack.holding());
        hold.release(Counts { out: 7, dlq: 2, filtered: 1 });
        assert!(ack.complete() && !ack.holding());
        let late = ack.late_counts();
        assert_eq!((late.out, late.dlq, late.filtered), (7, 2, 1));
        assert_eq!(ack.failed(), 0);
    }

    #[test]
    fn a_failed_or_dropped_hold_fails_the_batch_with_why() {
        let ack = Arc::new(BatchAck::default());
        ack.hold().fail("store down".into());
        assert_eq!(ack.failed(), 1);
        assert_eq!(ack.error().as_deref(), Some("store down"));
        let other = Arc::new(BatchAck::default());
        drop(other.hold());
        assert_eq!(other.failed(), 1);
        assert!(other.error().unwrap().contains("abandoned"));
        assert!(!other.holding());
    }
}
