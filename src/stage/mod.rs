//! The batch loop shared by the consuming stages (transform, load): take a
//! batch, let the stage make every output of it, and commit as the delivery
//! rule says (`crate::delivery`). Totals, progress, metrics and the summary's
//! common part live here too.

mod exactly_once;
mod options;
mod restart;

pub use exactly_once::{ExactlyOnceOpts, TRANSACTION_TIMEOUT, Transactions};
pub use options::ConsumeOpts;
pub use restart::follow_through;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::producer::{BaseRecord, Producer as _};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::delivery::{self, BatchAck, Cadence, Committer, Counts, Deliveries, Hold, Pending, Ranges, Transaction};
use crate::error::usage;
use crate::kafka::{self, Batch, ClientOpts, Producer, Profile, Reading, Source};
use crate::metrics::StageMetrics;

/// Batches that may wait for their acknowledgements while the next is processed.
const MAX_PENDING: usize = 4;
/// How often the consumer lag is measured (it asks the brokers).
const LAG_EVERY: Duration = Duration::from_secs(5);

/// The run's totals, the common part of every consuming stage's summary:
/// counts of committed batches, the offsets they were read from, and where
/// every record the run produced landed (outputs and dead letters).
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub stage: &'static str,
    #[serde(rename = "in")]
    pub received: u64,
    #[serde(flatten)]
    pub counts: Counts,
    pub batches: u64,
    pub seconds: f64,
    pub records_per_s: f64,
    /// The topics read and written: the summary says which produced ranges are outputs and which dead letters.
    pub input_topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_topic: Option<String>,
    pub dlq_topic: String,
    pub consumed: Ranges,
    pub produced: Ranges,
    /// The Kafka requests each client sent, when librdkafka's statistics are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_requests: Option<std::collections::BTreeMap<&'static str, kafka::ClientRequests>>,
    /// Records of the batches committed: all a failed run may count as taken in.
    #[serde(skip)]
    pub settled_in: u64,
    /// How often a `--follow` run started over in process after a failure (`follow_through`).
    #[serde(skip_serializing_if = "is_zero")]
    pub restarts: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Totals {
    /// Add what a later run of the same stage did (started over in process).
    fn absorb(&mut self, later: Totals) {
        self.received += later.received;
        self.counts += later.counts;
        self.batches += later.batches;
        self.consumed.merge(&later.consumed);
        self.produced.merge(&later.produced);
        self.settled_in += later.settled_in;
        self.restarts += later.restarts;
        // The figures of the clients alive last (each counts from its creation).
        self.kafka_requests = later.kafka_requests.or(self.kafka_requests.take());
    }

    /// Time the run from `start` to now, and its records a second.
    pub fn timed(&mut self, start: Instant) {
        self.seconds = start.elapsed().as_secs_f64();
        self.records_per_s = if self.seconds > 0.0 { self.received as f64 / self.seconds } else { 0.0 };
    }

    /// Count a committed batch.
    fn settle(&mut self, p: &Pending, counts: Counts, metrics: &StageMetrics) {
        self.counts += counts;
        self.settled_in += p.received;
        self.consumed.merge(&p.consumed);
        metrics.batch(p.received, counts.out, counts.dlq, p.took);
    }
}

/// How the stage reads `topic`: the offsets an upstream run produced there
/// (`--from-summary`) or those of the records stamped in a time range
/// (`--from-time`, `--to-time`), or as a consumer group (`--group`, else
/// `default_group`) up to the end seen at start, or on and on with `--follow`.
pub fn reading(kafka: &ClientOpts, opts: &ConsumeOpts, default_group: &str, topic: &str) -> Result<Reading> {
    if opts.from_time.is_some() || opts.to_time.is_some() {
        crate::validate::check_time_range(opts.from_time, opts.to_time)?;
        let spans =
            tokio::task::block_in_place(|| kafka::offsets::time_spans(kafka, topic, opts.from_time, opts.to_time))?;
        return Ok(Reading::Ranges(spans));
    }
    if let Some(lines) = &opts.from_summary {
        #[derive(serde::Deserialize)]
        struct Upstream {
            produced: Ranges,
        }
        // One summary a line: the replicas of the upstream stage, their ranges merged.
        let mut produced = Ranges::default();
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Upstream>(line) {
                Ok(up) => produced.merge(&up.produced),
                Err(e) => return usage(format!("--from-summary is not an rtds summary with `produced` offsets: {e}")),
            }
        }
        let mut spans = produced.of(topic);
        if let Some((k, n)) = opts.share {
            spans.retain(|p, _| p.rem_euclid(n as i32) == (k - 1) as i32);
        }
        return Ok(Reading::Ranges(spans));
    }
    let group = opts.group.clone().unwrap_or_else(|| default_group.to_owned());
    let instance = opts.group_instance_id.as_deref().map(with_hostname);
    Ok(if opts.follow { Reading::Follow { group, instance } } else { Reading::ToEnd { group, instance } })
}

/// `id` with `{hostname}` replaced by this host's name: each container of a
/// replicated service then has its own, the same across its restarts.
pub fn with_hostname(id: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    id.replace("{hostname}", host.trim())
}

/// How offsets get committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// After every output of the batch is acknowledged (at least once).
    AfterAck,
    /// In the Kafka transaction that carries the batch's outputs (exactly
    /// once), committed as often as the cadence says; with none, one
    /// transaction for the whole run, committed at its end.
    InTransaction(Option<Cadence>),
}

/// Run batches through `process` until the source is drained (bounded) or a
/// signal arrives (`--follow`). `process` makes the batch's outputs under its
/// ack and counts them there; the batch is committed as `commit` says. The
/// totals are returned even when a batch fails, so the summary line can still
/// be printed.
pub async fn run_batches(
    source: &mut Source,
    opts: &ConsumeOpts,
    producer: &Producer,
    deliveries: &Deliveries,
    commit: Commit,
    metrics: &StageMetrics,
    mut process: impl AsyncFnMut(&Arc<Batch>, &Arc<BatchAck>) -> Result<()>,
) -> (Totals, Result<()>) {
    let Profile { stage, batch_size, .. } = source.profile;
    let batch_size = opts.batch_size.map_or(batch_size, |n| n as usize);
    let mut shutdown = crate::shutdown::listen();
    let bar = crate::progress::bar(None, stage);
    let start = Instant::now();
    let mut totals = Totals { stage, dlq_topic: opts.dlq_topic.clone(), ..Default::default() };
    // The lag keeps being measured while a batch waits (a store that is down).
    let lag = metrics.enabled().then(|| spawn_lag_gauge(source, metrics));
    let mut committer = Committer::default();
    let mut transaction = Transaction::new(deliveries);
    let mut revocations = source.revocations();
    // The stage is set up: what start-up ran once need not stay resident.
    crate::resident::release_startup_code();
    let result: Result<()> = async {
        while let Some(batch) = source.next_batch(batch_size, opts.max_wait, &mut shutdown).await? {
            if source.revocations() != revocations {
                // The group took partitions back: an open transaction's
                // batches may be another member's now. Abort it; the group
                // gives every one of its records out again from the last commit.
                revocations = source.revocations();
                let dropped = transaction.abort(producer);
                // Counted again when they are read again.
                totals.received -= dropped;
                if dropped > 0 {
                    tracing::info!(
                        records = dropped,
                        "partitions revoked: the open transaction is aborted and re-read"
                    );
                }
            }
            if batch.is_empty() {
                // Idle input: commit what was acknowledged meanwhile, without waiting.
                match commit {
                    Commit::AfterAck => {
                        committer
                            .commit_ready(usize::MAX, |o| source.commit(o), |p, c| totals.settle(p, c, metrics))
                            .await?;
                        source.send_commits()?;
                    }
                    // One transaction for the whole run: nothing to commit before its end.
                    Commit::InTransaction(None) => {}
                    Commit::InTransaction(Some(_)) => {
                        transaction
                            .commit(producer, source.group_metadata().as_ref(), |p, c| totals.settle(p, c, metrics))?
                    }
                }
                continue;
            }
            let t = Instant::now();
            let batch = Arc::new(batch);
            let ack = Arc::new(BatchAck::default());
            let received = batch.len() as u64;
            totals.received += received;
            totals.batches += 1;
            bar.set_position(totals.received);
            let offsets = batch.offsets()?;
            let consumed = source.spans(&batch);
            match commit {
                Commit::AfterAck => {
                    process(&batch, &ack).await?;
                    committer.push(Pending { offsets, ack, received, consumed, took: t.elapsed() });
                    committer
                        .commit_ready(MAX_PENDING, |o| source.commit(o), |p, c| totals.settle(p, c, metrics))
                        .await?;
                }
                Commit::InTransaction(cadence) => {
                    transaction.begin(producer)?;
                    process(&batch, &ack).await?;
                    // A batch short of full, its partitions read to their end: the
                    // input has nothing more waiting, so commit without the cadence's wait.
                    let caught_up = received < batch_size as u64 && source.caught_up(&consumed);
                    transaction.add(Pending { offsets, ack, received, consumed, took: t.elapsed() });
                    if cadence.is_some_and(|c| transaction.due(&c, caught_up)) {
                        let group = source.group_metadata();
                        transaction.commit(producer, group.as_ref(), |p, c| totals.settle(p, c, metrics))?;
                    }
                }
            }
        }
        kafka::flush(producer, delivery::ACK_TIMEOUT)?;
        transaction.commit(producer, source.group_metadata().as_ref(), |p, c| totals.settle(p, c, metrics))?;
        committer.commit_ready(0, |o| source.commit(o), |p, c| totals.settle(p, c, metrics)).await?;
        source.commit_last()
    }
    .await;
    let result = result.map_err(|e| {
        let e = transaction.roll_back(producer, e);
        // A failed run counts only what it committed: the batch that failed, and any read
        // since the last commit, are read again by the next run (counted there).
        totals.received = totals.settled_in;
        // A producer failed for good says so, whichever failure came first (`delivery::fenced_by_a_twin`).
        match producer.client().fatal_error() {
            Some((_, why)) => e.context(delivery::ProducerFailed(why)),
            None => e,
        }
    });
    if let Some(lag) = lag {
        lag.abort();
    }
    bar.finish_and_clear();
    totals.produced = deliveries.produced();
    totals.kafka_requests = kafka::requests_sent();
    totals.timed(start);
    (totals, result)
}

/// Measure the consumer lag every `LAG_EVERY` on a task of its own, so the
/// gauge moves even while the batch loop waits for a store.
fn spawn_lag_gauge(source: &Source, metrics: &StageMetrics) -> JoinHandle<()> {
    let consumer = source.consumer.clone();
    let gauge = metrics.lag_gauge();
    tokio::spawn(async move {
        loop {
            let consumer = consumer.clone();
            if let Ok(Some(lag)) = tokio::task::spawn_blocking(move || kafka::lag(&consumer)).await {
                gauge.set(lag as f64);
            }
            tokio::time::sleep(LAG_EVERY).await;
        }
    })
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
    /// gives back the state and the counts of what it made, which release the
    /// hold; an error fails it, so the batch is never committed.
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

/// Which stage sends a record to the DLQ (and, for a load, which sink).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub stage: &'a str,
    pub sink: Option<&'a str>,
}

/// The original record, untouched, to the DLQ with why, which stage (and
/// sink), and where from; its ingest stamp and replay count as it had them.
pub async fn dead_letter(
    producer: &Producer,
    ack: &Arc<BatchAck>,
    dlq_topic: &str,
    origin: Origin<'_>,
    m: kafka::BatchRecord<'_>,
    reason: &str,
) -> Result<()> {
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let mut pairs: Vec<(&str, &[u8])> = vec![
        ("rtds-error", reason.as_bytes()),
        ("rtds-stage", origin.stage.as_bytes()),
        ("rtds-source-topic", m.topic().as_bytes()),
        ("rtds-source-partition", partition.as_bytes()),
        ("rtds-source-offset", offset.as_bytes()),
    ];
    if let Some(sink) = origin.sink {
        pairs.push(("rtds-sink", sink.as_bytes()));
    }
    // What `rtds replay` gives back with the record: its ingest stamp, and how often it came back already.
    if let Some(at) = m.ingested_at() {
        pairs.push((kafka::INGESTED_AT, at));
    }
    let replays = m.replays().to_string();
    if m.replays() > 0 {
        pairs.push((kafka::REPLAYS, replays.as_bytes()));
    }
    let headers = kafka::headers(&pairs);
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(dlq_topic).headers(headers);
    if let Some(k) = m.key() {
        record = record.key(k);
    }
    if let Some(p) = m.payload() {
        record = record.payload(p);
    }
    tracing::debug!(stage = origin.stage, partition = m.partition(), offset = m.offset(), "to DLQ: {reason}");
    kafka::send(producer, ack, record).await
}
