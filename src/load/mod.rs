//! `rtds load`: clean rows from `users_created` into Cassandra, PostgreSQL or
//! Parquet. Offsets are committed only after the store acknowledged the batch
//! (write ack, transaction commit, file renamed); a store that is down is
//! retried with backoff for `--retry-for`, then the run fails uncommitted.

pub mod latency;
pub mod row;

use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::message::Message;

use crate::cli::{Compression, GlobalOpts, LoadArgs, Sink as SinkKind};
use crate::kafka::{self, Source};
use crate::metrics::StageMetrics;
use crate::sinks::{self, Rejected, Sink, WriteError};
use crate::stage::{self, Commit, Counts};
use latency::{EndToEnd, Percentiles};
use row::UserRow;

const STAGE: &str = "load";
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(serde::Serialize)]
struct Summary<'a> {
    #[serde(flatten)]
    totals: stage::Totals,
    sink: &'a str,
    retried: u64,
    /// From ingest to the store's acknowledgement, over the rows written.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<Percentiles>,
}

pub async fn run(global: &GlobalOpts, args: &LoadArgs) -> Result<()> {
    let mut sink = match args.sink {
        SinkKind::Cassandra => {
            Sink::Cassandra(Box::new(sinks::cassandra::CassandraSink::open(&args.cassandra, &args.table).await?))
        }
        SinkKind::Postgres => Sink::Postgres(sinks::postgres::PostgresSink::open(&args.postgres, &args.table).await?),
        SinkKind::Parquet => Sink::Parquet(sinks::parquet::ParquetSink::open(&args.out, &args.table)?),
    };
    let name = sink.name();
    let group = args.consume.group.clone().unwrap_or_else(|| format!("rtds-load-{name}"));
    kafka::ensure_topics(global, &[&args.input_topic, &args.consume.dlq_topic], 3, 1).await?;
    let (producer, deliveries) = kafka::producer(global, Compression::Lz4, None)?;
    let mut source = Source::open(global, &args.input_topic, &group, !args.consume.follow).await?;
    let metrics = StageMetrics::new(STAGE, global.metrics_addr)?;
    let mut retried = 0u64;
    let mut e2e = EndToEnd::new(global.metrics_addr.is_some());
    let dlq_topic = args.consume.dlq_topic.as_str();

    let (totals, result) = stage::drive(
        STAGE,
        &mut source,
        &args.consume,
        &producer,
        &deliveries,
        Commit::AfterAck,
        &metrics,
        async |_, batch, ack| {
            let mut counts = Counts::default();
            let mut rows = Vec::with_capacity(batch.messages.len());
            let mut origin = Vec::with_capacity(batch.messages.len());
            for m in &batch.messages {
                match UserRow::parse(m.payload()) {
                    Ok(r) => {
                        rows.push(r);
                        origin.push(m);
                    }
                    Err(why) => {
                        stage::dead_letter(&producer, ack, dlq_topic, STAGE, m, &why).await?;
                        counts.dlq += 1;
                    }
                }
            }
            let rejected = write_with_retry(&mut sink, &rows, args.retry_for, &mut retried).await?;
            let acked_at = chrono::Utc::now();
            let refused: std::collections::HashSet<usize> = rejected.iter().map(|(i, _)| *i).collect();
            for (i, m) in origin.iter().enumerate() {
                if !refused.contains(&i) {
                    e2e.record(kafka::header(m, "rtds-ingested-at"), acked_at);
                }
            }
            for (i, why) in &rejected {
                stage::dead_letter(&producer, ack, dlq_topic, STAGE, origin[*i], &format!("{name}: {why}")).await?;
            }
            counts.dlq += rejected.len() as u64;
            counts.out = (rows.len() - rejected.len()) as u64;
            Ok(counts)
        },
    )
    .await;
    crate::summary::print(&Summary { totals, sink: name, retried, latency_ms: e2e.percentiles() })?;
    result
}

/// Write a batch, retrying transient failures with backoff for up to `retry_for`.
async fn write_with_retry(
    sink: &mut Sink,
    rows: &[UserRow],
    retry_for: Duration,
    retried: &mut u64,
) -> Result<Rejected> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let start = Instant::now();
    let mut wait = Duration::from_millis(250);
    loop {
        match sink.write(rows).await {
            Ok(rejected) => return Ok(rejected),
            Err(WriteError::Fatal(e)) => return Err(e.context(format!("writing to {}", sink.name()))),
            Err(WriteError::Transient(e)) if start.elapsed() + wait > retry_for => {
                return Err(e.context(format!("writing to {} (gave up after retrying for {retry_for:?})", sink.name())));
            }
            Err(WriteError::Transient(e)) => {
                tracing::warn!(sink = sink.name(), retry_in = ?wait, "write failed, will retry: {e:#}");
                *retried += 1;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }
}
