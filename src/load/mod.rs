//! `rtds load`: clean rows from `users_created` into Cassandra, PostgreSQL,
//! Parquet or Delta Lake. Offsets are committed only after the store acknowledged the batch
//! (write ack, transaction commit, file renamed); a store that is down is
//! retried with backoff for `--retry-for`, then the run fails uncommitted.
//! The store writes one batch while the next is consumed and parsed.

mod options;

pub use options::LoadArgs;

pub mod latency;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::delivery::{BatchAck, Counts};
use crate::kafka::{self, Batch, Producer, Profile, Source};
use crate::kafka::{ClientOpts, Compression};
use crate::metrics::StageMetrics;
use crate::row::UserRow;
use crate::sinks::{ReadAt, Rejected, Retry, Table};
use crate::stage::{self, Commit, Relay};
use latency::{EndToEnd, Percentiles, Stamps};

const STAGE: &str = "load";
/// The batch size is the sink's (`Connector::BATCH_SIZE`); the prefetch is
/// as small as keeps the load at speed (bench/README.md, "Why the defaults"),
/// and grows with a larger batch (`prefetch_mb`).
pub const PROFILE: Profile = Profile { stage: STAGE, batch_size: crate::sinks::BATCH_SIZE, prefetch_mb: 2 };
/// About what a clean row takes in the consumer's queue: its JSON (~415
/// bytes), key and headers.
const ROW_BYTES: usize = 512;

/// The prefetch for batches of `batch_size` rows: at least a batch, so that
/// while the sink writes one the next is read whole and does not close short
/// at the end of what was queued (a Delta commit a short batch is a commit
/// more: bench/README.md, "Delta against Parquet").
/// At most `MAX_PREFETCH_MB`: librdkafka refuses a fetch larger than
/// `receive.message.max.bytes` (100 MB).
fn prefetch_mb(batch_size: usize) -> u32 {
    let batch_mb = u32::try_from(batch_size.saturating_mul(ROW_BYTES) >> 20).unwrap_or(u32::MAX);
    batch_mb.clamp(PROFILE.prefetch_mb, MAX_PREFETCH_MB)
}
const MAX_PREFETCH_MB: u32 = 64;

#[derive(serde::Serialize)]
struct Summary<'a> {
    #[serde(flatten)]
    totals: stage::Totals,
    sink: &'a str,
    /// Where the rows went (`keyspace.table`, `schema.table`, a directory), for reconcile to read back.
    store: String,
    retried: u64,
    /// From ingest to the store's acknowledgement, over the rows written.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<Percentiles>,
}

pub async fn run(
    kafka: &ClientOpts,
    registry: &crate::registry::RegistryOpts,
    metrics_addr: Option<std::net::SocketAddr>,
    args: &LoadArgs,
) -> Result<()> {
    kafka::check_consumer_settings(kafka)?;
    let mut reader = crate::avro::RowReader::new(crate::registry::Registry::new(registry)?);
    let sink = args.sink.open(&args.sinks, &args.table).await?;
    let name = sink.name();
    let store = sink.location();
    let reading = stage::reading(kafka, &args.consume, &format!("rtds-load-{name}"), &args.input_topic)?;
    let stream = format!("{}/{}", reading.name(), args.input_topic);
    kafka::ensure_topics(kafka, &[&args.input_topic, &args.consume.dlq_topic], &args.topics).await?;
    let (producer, deliveries) = kafka::producer(kafka, Compression::Lz4, kafka::LINGER_BATCH, None)?;
    let producer = Arc::new(producer);
    let batch_size = args.consume.batch_size.map_or(args.sink.batch_size(), |n| n as usize);
    let profile = Profile { batch_size, prefetch_mb: prefetch_mb(batch_size), ..PROFILE };
    let mut source = Source::open(kafka, &profile, &args.input_topic, &reading, args.consume.end_wait).await?;
    let metrics = StageMetrics::new(STAGE, metrics_addr)?;
    let shared = Arc::new(Shared {
        producer: producer.clone(),
        dlq_topic: args.consume.dlq_topic.clone(),
        retry_for: args.retry_for,
        retried: AtomicU64::new(0),
        e2e: Mutex::new(EndToEnd::new(metrics_addr.is_some())),
        stream,
    });
    // The store writes one batch while the next is consumed and parsed.
    let mut writer = Relay::new(sink);
    let dlq_topic = args.consume.dlq_topic.as_str();
    let parse_failure = stage::Origin { stage: STAGE, sink: Some(name) };

    let (mut totals, result) = stage::run_batches(
        &mut source,
        &args.consume,
        &producer,
        &deliveries,
        Commit::AfterAck,
        &metrics,
        async |batch, ack| {
            let mut dlq = 0;
            let mut rows = Vec::with_capacity(batch.len());
            let mut origin = Vec::with_capacity(batch.len());
            for (i, (m, parsed)) in batch.iter().zip(reader.rows(batch).await?).enumerate() {
                match parsed {
                    Ok(r) => {
                        rows.push(r);
                        origin.push(i);
                    }
                    Err(why) => {
                        stage::dead_letter(&producer, ack, dlq_topic, parse_failure, m, &why).await?;
                        dlq += 1;
                    }
                }
            }
            ack.count(Counts { dlq, ..Counts::default() });
            // The rows written and refused are counted with the hold's release.
            let w = ToWrite { batch: batch.clone(), rows, origin, loaded_at: chrono::Utc::now() };
            let shared = shared.clone();
            writer
                .start(ack.hold(), move |mut sink, ack| async move {
                    let result = finish_batch(&mut sink, &w, &shared, &ack).await;
                    (sink, result)
                })
                .await
        },
    )
    .await;
    let latency_ms = shared.e2e.lock().ok().and_then(|e| e.percentiles());
    let retried = shared.retried.load(Ordering::Acquire);
    totals.input_topic.clone_from(&args.input_topic);
    crate::summary::keep(&Summary { totals, sink: name, store, retried, latency_ms })?;
    result
}

/// What the write tasks share with the stage.
struct Shared {
    producer: Arc<Producer>,
    dlq_topic: String,
    retry_for: Duration,
    retried: AtomicU64,
    e2e: Mutex<EndToEnd>,
    /// Where the rows are read (`sinks::ReadAt`).
    stream: String,
}

/// One batch's rows on their way to the store.
struct ToWrite {
    batch: Arc<Batch>,
    rows: Vec<UserRow>,
    /// Per row, the index of its record in the batch.
    origin: Vec<usize>,
    /// When the batch was closed (a hop of the end-to-end latency).
    loaded_at: chrono::DateTime<chrono::Utc>,
}

/// Write the rows, record their latency, and send the rows the store refused
/// to the DLQ (under the batch's ack); the counts of rows written and refused.
async fn finish_batch(sink: &mut Table, w: &ToWrite, shared: &Shared, ack: &Arc<BatchAck>) -> Result<Counts> {
    let started = Instant::now();
    let offsets: Vec<(i32, i64)> =
        w.origin.iter().map(|i| (w.batch.get(*i).partition(), w.batch.get(*i).offset())).collect();
    let at = ReadAt { stream: &shared.stream, offsets: &offsets };
    let rejected = write_with_retry(sink, &w.rows, at, shared.retry_for, &shared.retried).await?;
    let acked_at = chrono::Utc::now();
    tracing::debug!(rows = w.rows.len(), took = ?started.elapsed(), "batch written");
    let refused: HashSet<usize> = rejected.iter().map(|(i, _)| *i).collect();
    if let Ok(mut e2e) = shared.e2e.lock() {
        for (i, at) in w.origin.iter().enumerate() {
            if !refused.contains(&i) {
                let m = w.batch.get(*at);
                e2e.record(&Stamps {
                    ingested_at: m.ingested_at(),
                    transformed_at: m.timestamp(),
                    loaded_at: w.loaded_at,
                    acked_at,
                });
            }
        }
    }
    let name = sink.name();
    for (i, why) in &rejected {
        let m = w.batch.get(w.origin[*i]);
        let reason = format!("{name}: {why}");
        let origin = stage::Origin { stage: STAGE, sink: Some(name) };
        stage::dead_letter(&shared.producer, ack, &shared.dlq_topic, origin, m, &reason).await?;
    }
    Ok(Counts { out: (w.rows.len() - rejected.len()) as u64, dlq: rejected.len() as u64, filtered: 0 })
}

/// Write a batch, retrying transient failures with backoff for up to `retry_for`.
async fn write_with_retry(
    sink: &mut Table,
    rows: &[UserRow],
    at: ReadAt<'_>,
    retry_for: Duration,
    retried: &AtomicU64,
) -> Result<Rejected> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut retry = Retry::new(sink.name(), retry_for, retried);
    loop {
        match sink.write(rows, at).await {
            Ok(rejected) => return Ok(rejected),
            Err(failed) => retry.after(failed).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefetch_holds_a_batch_within_bounds() {
        assert_eq!(prefetch_mb(crate::sinks::BATCH_SIZE), PROFILE.prefetch_mb);
        assert_eq!(prefetch_mb(50_000), 24);
        assert_eq!(prefetch_mb(1_000_000), MAX_PREFETCH_MB);
    }
}
