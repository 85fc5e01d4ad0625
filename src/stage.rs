//! The batch loop shared by the consuming stages (transform, load): take a
//! batch, let the stage write every output of it, wait for Kafka to acknowledge
//! what was produced (outputs, DLQ records), and only then commit the offsets.
//! Counts, progress, metrics and the summary line live here too.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::TopicPartitionList;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::BaseRecord;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::cli::ConsumeOpts;
use crate::kafka::{self, BatchAck, Consumed, Deliveries, Hold, Producer, Profile, Source};
use crate::metrics::StageMetrics;

const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Batches that may wait for their acknowledgements while the next is processed.
const MAX_PENDING: usize = 4;

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

/// A batch handed on, waiting for its outputs to be acknowledged.
struct Pending {
    offsets: TopicPartitionList,
    ack: Arc<BatchAck>,
    received: u64,
    counts: Counts,
    took: Duration,
}

/// Run batches through `process` until the source is drained (bounded) or a
/// signal arrives (`--follow`). The totals are returned even when a batch
/// fails, so the summary line can still be printed. A batch's counts are
/// final when it is committed: `process` may leave outputs in flight under a
/// `Hold` of the batch's ack, which reports them when released.
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    source: &mut Source,
    opts: &ConsumeOpts,
    producer: &Producer,
    deliveries: &Deliveries,
    commit: Commit,
    metrics: &StageMetrics,
    mut process: impl AsyncFnMut(&Source, &Arc<Consumed>, &Arc<BatchAck>) -> Result<Counts>,
) -> (Totals, Result<()>) {
    let Profile { stage, batch_size, .. } = source.profile;
    let batch_size = opts.batch_size.map_or(batch_size, |n| n as usize);
    let mut shutdown = crate::shutdown::listen();
    let bar = crate::progress::bar(None, stage);
    let start = Instant::now();
    let mut totals = Totals { stage, ..Default::default() };
    // Batches whose outputs are still being acknowledged, oldest first: the
    // next batch is processed meanwhile, and each is committed once complete.
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let result: Result<()> = async {
        while let Some(batch) = source.next_batch(batch_size, opts.max_wait, &mut shutdown).await? {
            if batch.messages.is_empty() {
                // Idle input: commit the batches acknowledged meanwhile, without waiting.
                commit_acknowledged(source, deliveries, &mut pending, usize::MAX, &mut totals, metrics).await?;
                continue;
            }
            let t = Instant::now();
            let batch = Arc::new(batch);
            let ack = Arc::new(BatchAck::default());
            let counts = process(source, &batch, &ack).await?;
            let received = batch.messages.len() as u64;
            totals.received += received;
            totals.batches += 1;
            bar.set_position(totals.received);
            let done = Pending { offsets: batch.offsets()?, ack, received, counts, took: t.elapsed() };
            match commit {
                Commit::AfterAck => {
                    pending.push_back(done);
                    commit_acknowledged(source, deliveries, &mut pending, MAX_PENDING, &mut totals, metrics).await?;
                }
                Commit::InTransaction => settle(&done, &mut totals, metrics, source),
            }
        }
        kafka::flush(producer, FLUSH_TIMEOUT)?;
        commit_acknowledged(source, deliveries, &mut pending, 0, &mut totals, metrics).await
    }
    .await;
    bar.finish_and_clear();
    totals.seconds = start.elapsed().as_secs_f64();
    totals.records_per_s = if totals.seconds > 0.0 { totals.received as f64 / totals.seconds } else { 0.0 };
    (totals, result)
}

/// Count a batch whose outputs are all acknowledged.
fn settle(done: &Pending, totals: &mut Totals, metrics: &StageMetrics, source: &Source) {
    let late = done.ack.late_counts();
    let out = done.counts.out + late.out;
    let dlq = done.counts.dlq + late.dlq;
    totals.out += out;
    totals.dlq += dlq;
    totals.filtered += done.counts.filtered + late.filtered;
    metrics.batch(done.received, out, dlq, done.took, || source.lag());
}

/// Commit the oldest pending batches whose outputs are all acknowledged, waiting
/// until at most `keep` remain. A failed output stops the run, uncommitted.
async fn commit_acknowledged(
    source: &Source,
    deliveries: &Deliveries,
    pending: &mut VecDeque<Pending>,
    keep: usize,
    totals: &mut Totals,
    metrics: &StageMetrics,
) -> Result<()> {
    let mut start = Instant::now();
    while let Some(front) = pending.front() {
        let ack = &front.ack;
        if ack.failed() > 0 {
            if let Some(why) = ack.error() {
                anyhow::bail!("{why}; the batch's offsets were not committed");
            }
            anyhow::bail!(
                "{} record(s) of a batch were not acknowledged by Kafka ({}); its offsets were not committed",
                ack.failed(),
                deliveries.first_error().unwrap_or_default()
            );
        }
        if ack.complete() {
            source.commit(&front.offsets)?;
            settle(front, totals, metrics, source);
            pending.pop_front();
        } else if pending.len() > keep {
            // A hold's owner keeps its own deadline (a store retried for
            // --retry-for); the timeout is for Kafka's acknowledgements.
            if ack.holding() {
                start = Instant::now();
            } else if start.elapsed() > FLUSH_TIMEOUT {
                anyhow::bail!(
                    "Kafka did not acknowledge a batch's records within {FLUSH_TIMEOUT:?}; offsets not committed"
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            break;
        }
    }
    Ok(())
}

/// The second half of a stage (the transform and its sends, a store write) on
/// a worker task, one batch at a time: the next batch is consumed while the
/// last is worked on (the stage takes the larger of the two times, not their
/// sum), and batches still finish in order, so a key's records keep theirs.
/// The worker's state (a store connection) is handed from batch to batch.
pub struct Relay<S> {
    /// The state when no work runs.
    idle: Option<S>,
    /// The work running, which gives the state back (and why it failed, if it did).
    running: Option<JoinHandle<(S, Option<String>)>>,
}

impl<S: Send + 'static> Relay<S> {
    pub fn new(state: S) -> Self {
        Self { idle: Some(state), running: None }
    }

    /// Run `work` for the batch of `hold` once the previous batch's work is
    /// done; if that failed, stop here with its error (nothing more is tried).
    /// `work` gets the state and the batch's ack (to send outputs under) and
    /// gives back the state and the batch's counts, which release the hold; an
    /// error fails it, so the batch is never committed.
    pub async fn start<F>(&mut self, hold: Hold, work: impl FnOnce(S, Arc<BatchAck>) -> F) -> Result<()>
    where
        F: Future<Output = (S, Result<Counts>)> + Send + 'static,
    {
        if let Some(running) = self.running.take() {
            let (state, failed) = running.await.context("a stage's worker task stopped")?;
            self.idle = Some(state);
            if let Some(why) = failed {
                anyhow::bail!(why);
            }
        }
        let state = self.idle.take().context("the stage's worker state was lost by an earlier batch")?;
        let work = work(state, hold.ack().clone());
        self.running = Some(tokio::spawn(async move {
            let (state, result) = work.await;
            match result {
                Ok(counts) => {
                    hold.release(counts);
                    (state, None)
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    hold.fail(why.clone());
                    (state, Some(why))
                }
            }
        }));
        Ok(())
    }
}

/// The original record, untouched, to the DLQ with why, which stage, and where from.
pub async fn dead_letter(
    producer: &Producer,
    ack: &Arc<BatchAck>,
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
    kafka::send(producer, ack, record).await
}
