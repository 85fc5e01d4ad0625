//! The batch loop shared by the consuming stages (transform, load): take a
//! batch, let the stage write every output of it, wait for Kafka to acknowledge
//! what was produced (outputs, DLQ records), and only then commit the offsets.
//! Counts, progress, metrics and the summary line live here too.

use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::BaseRecord;
use serde::Serialize;

use crate::cli::ConsumeOpts;
use crate::kafka::{self, Consumed, Deliveries, Producer, Source};
use crate::metrics::StageMetrics;

const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// What one batch gave.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub out: u64,
    pub dlq: u64,
    /// Records a custom SQL filtered out (in = out + dlq + filtered).
    pub filtered: u64,
}

/// The run's totals, the common part of every consuming stage's summary.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub stage: &'static str,
    #[serde(rename = "in")]
    pub received: u64,
    pub out: u64,
    pub dlq: u64,
    pub filtered: u64,
    pub batches: u64,
    pub seconds: f64,
    pub records_per_s: f64,
}

/// How offsets get committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// After every produced record of the batch is acknowledged (at least once).
    AfterAck,
    /// The stage commits them itself, inside a Kafka transaction.
    InTransaction,
}

/// Run batches through `process` until the source is drained (bounded) or a
/// signal arrives (`--follow`). The totals are returned even when a batch
/// fails, so the summary line can still be printed.
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    stage: &'static str,
    source: &mut Source,
    opts: &ConsumeOpts,
    producer: &Producer,
    deliveries: &Deliveries,
    commit: Commit,
    metrics: &StageMetrics,
    mut process: impl AsyncFnMut(&Source, &Consumed) -> Result<Counts>,
) -> (Totals, Result<()>) {
    let mut shutdown = crate::shutdown::listen();
    let bar = crate::progress::bar(None, stage);
    let start = Instant::now();
    let mut totals = Totals { stage, ..Default::default() };
    let result: Result<()> = async {
        while let Some(batch) = source.next_batch(opts.batch_size as usize, opts.max_wait, &mut shutdown).await? {
            let t = Instant::now();
            let failed_before = deliveries.failed();
            let counts = process(source, &batch).await?;
            if commit == Commit::AfterAck {
                kafka::flush(producer, FLUSH_TIMEOUT)?;
                let failed = deliveries.failed() - failed_before;
                if failed > 0 {
                    anyhow::bail!(
                        "{failed} record(s) of a batch were not acknowledged by Kafka ({}); its offsets were not committed",
                        deliveries.first_error().unwrap_or_default()
                    );
                }
                source.commit(&batch)?;
            }
            let n = batch.messages.len() as u64;
            totals.received += n;
            totals.out += counts.out;
            totals.dlq += counts.dlq;
            totals.filtered += counts.filtered;
            totals.batches += 1;
            metrics.batch(n, counts.out, counts.dlq, t.elapsed(), || source.lag());
            bar.set_position(totals.received);
        }
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    totals.seconds = start.elapsed().as_secs_f64();
    totals.records_per_s = if totals.seconds > 0.0 { totals.received as f64 / totals.seconds } else { 0.0 };
    (totals, result)
}

/// The original record, untouched, to the DLQ with why, which stage, and where from.
pub async fn dead_letter(
    producer: &Producer,
    dlq_topic: &str,
    stage: &str,
    m: &OwnedMessage,
    reason: &str,
) -> Result<()> {
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let headers = kafka::headers(&[
        ("rtds-error", reason.as_bytes()),
        ("rtds-stage", stage.as_bytes()),
        ("rtds-source-topic", m.topic().as_bytes()),
        ("rtds-source-partition", partition.as_bytes()),
        ("rtds-source-offset", offset.as_bytes()),
    ]);
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(dlq_topic).headers(headers);
    if let Some(k) = m.key() {
        record = record.key(k);
    }
    if let Some(p) = m.payload() {
        record = record.payload(p);
    }
    tracing::debug!(stage, partition = m.partition(), offset = m.offset(), "to DLQ: {reason}");
    kafka::send(producer, record).await
}
