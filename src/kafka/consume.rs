//! Consuming in batches with commit-after-ack: a stage takes a batch, writes
//! every output of it, and only then commits the batch's offsets. Bounded runs
//! stop at the high watermarks seen at start; `--follow` runs until a signal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::{METADATA_TIMEOUT, client_config};
use crate::cli::GlobalOpts;

/// What sets one consuming stage apart from another: its name (in logs and
/// metrics) and its defaults for batch size and prefetch.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub stage: &'static str,
    /// Records per batch unless `--batch-size` says otherwise.
    pub batch_size: usize,
    /// How much the consumer fetches ahead, in MB.
    pub prefetch_mb: u32,
}

/// Logs rebalances: with commit-after-ack, a partition revoked mid-batch is
/// re-read by its new owner from the last commit (at least once; sinks upsert).
/// The partitions held are a gauge: a `--follow` stage is ready once it has some.
pub struct Rebalances {
    stage: &'static str,
}

impl ClientContext for Rebalances {
    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition is how a bounded run knows it is done, not a fault.
        if matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::trace!("{reason}");
        } else {
            tracing::warn!("Kafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for Rebalances {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let held = metrics::gauge!("rtds_partitions_assigned", "stage" => self.stage);
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %describe(tpl), "partitions assigned");
                held.set(tpl.count() as f64);
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = %describe(tpl), "partitions revoked");
                held.set(0.0);
            }
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect::<Vec<_>>().join(",")
}

/// How long a stage waits for the first record of a batch before it reports
/// itself idle with an empty batch.
const IDLE: Duration = Duration::from_millis(250);

/// One batch and where it came from.
pub struct Consumed {
    pub messages: Vec<OwnedMessage>,
}

impl Consumed {
    /// The offsets to commit for this batch: per partition, the last offset + 1.
    pub fn offsets(&self) -> Result<TopicPartitionList> {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for m in &self.messages {
            let e = next.entry((m.topic(), m.partition())).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
                .context("building the offsets to commit")?;
        }
        Ok(tpl)
    }
}

/// A topic read in batches by a consumer group.
pub struct Source {
    pub consumer: StreamConsumer<Rebalances>,
    pub profile: Profile,
    topic: String,
    group: String,
    /// Bounded mode: per partition, the high watermark at start (stop there).
    targets: Option<HashMap<i32, i64>>,
    /// Bounded mode: partitions that reached their target.
    done: HashMap<i32, bool>,
}

impl Source {
    /// Subscribe `group` to `topic`, prefetching as the stage's profile says.
    /// `bounded` records the high watermarks now.
    pub async fn open(global: &GlobalOpts, profile: &Profile, topic: &str, group: &str, bounded: bool) -> Result<Self> {
        let mb = profile.prefetch_mb;
        let (queued_kb, fetch_bytes, partition_bytes) =
            ((mb * 1024).to_string(), (mb << 20).to_string(), (mb << 19).to_string());
        let consumer: StreamConsumer<Rebalances> = client_config(
            global,
            &[
                ("group.id", group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("isolation.level", "read_committed"),
                ("enable.partition.eof", "true"),
                // Prefetch bounded to about a batch: enough to keep a stage busy
                // (it works on one batch while the next is read), little memory.
                // A record larger than these still comes through (the broker
                // returns at least one record batch per fetch). Once the queue
                // is full, fetching pauses for fetch.queue.backoff.ms (default
                // 1 s: a stall per batch); resume almost at once instead.
                ("queued.max.messages.kbytes", &queued_kb),
                ("fetch.queue.backoff.ms", "5"),
                ("fetch.max.bytes", &fetch_bytes),
                ("max.partition.fetch.bytes", &partition_bytes),
            ],
        )?
        .create_with_context(Rebalances { stage: profile.stage })
        .with_context(|| format!("creating a Kafka consumer for {}", global.brokers))?;
        let targets = if bounded { Some(high_watermarks(&consumer, topic, &global.brokers).await?) } else { None };
        consumer.subscribe(&[topic]).with_context(|| format!("subscribing to {topic}"))?;
        let done = targets.iter().flatten().map(|(p, hi)| (*p, *hi == 0)).collect();
        Ok(Self { consumer, profile: *profile, topic: topic.to_owned(), group: group.to_owned(), targets, done })
    }

    /// True once every partition has been read up to its start-time high
    /// watermark (bounded mode only).
    fn finished(&self) -> bool {
        self.targets.is_some() && self.done.values().all(|d| *d)
    }

    /// Up to `max` records, waiting at most `max_wait` once the first arrived;
    /// empty if none came for `IDLE` (the stage is idle, not over).
    /// `None` when the run is over: bounded and drained, or a signal arrived.
    pub async fn next_batch(
        &mut self,
        max: usize,
        max_wait: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Consumed>> {
        let mut messages = Vec::new();
        let mut first_at: Option<Instant> = None;
        loop {
            if messages.len() >= max || *shutdown.borrow() {
                break;
            }
            if self.finished() {
                break;
            }
            // Wait longer for the first record of a batch than for the rest.
            let wait = match first_at {
                Some(t) => max_wait.saturating_sub(t.elapsed()),
                None => IDLE,
            };
            if first_at.is_some() && wait.is_zero() {
                break;
            }
            let received = tokio::select! {
                r = tokio::time::timeout(wait, self.consumer.recv()) => r,
                _ = shutdown.changed() => break,
            };
            match received {
                // Nothing for a while: an empty batch, so the caller can commit
                // what was acknowledged meanwhile.
                Err(_) => break,
                Ok(Err(KafkaError::PartitionEOF(p))) => {
                    if self.targets.is_some() {
                        self.done.insert(p, true);
                    }
                }
                Ok(Err(e)) => {
                    return Err(e).with_context(|| format!("consuming {} as group {}", self.topic, self.group));
                }
                Ok(Ok(m)) => {
                    let p = m.partition();
                    if let Some(targets) = &self.targets {
                        let target = targets.get(&p).copied().unwrap_or(0);
                        if m.offset() >= target {
                            // Written after the run began: left for the next run, uncommitted.
                            self.done.insert(p, true);
                            continue;
                        }
                        if m.offset() + 1 >= target {
                            self.done.insert(p, true);
                        }
                    }
                    messages.push(m.detach());
                    first_at.get_or_insert_with(Instant::now);
                }
            }
        }
        if messages.is_empty() && (self.finished() || *shutdown.borrow()) {
            return Ok(None);
        }
        Ok(Some(Consumed { messages }))
    }

    /// Commit the offsets of a batch whose outputs are all acknowledged.
    pub fn commit(&self, offsets: &TopicPartitionList) -> Result<()> {
        if offsets.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(offsets, CommitMode::Sync)
            .with_context(|| format!("committing offsets of {} for group {}", self.topic, self.group))
    }

    /// Records between the group's position and the end of each assigned partition.
    pub fn lag(&self) -> Option<i64> {
        let position = self.consumer.position().ok()?;
        let mut lag = 0;
        for e in position.elements() {
            let (_, hi) = self.consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2)).ok()?;
            if let Offset::Offset(pos) = e.offset() {
                lag += (hi - pos).max(0);
            }
        }
        Some(lag)
    }
}

/// Per partition of `topic`, its high watermark now.
async fn high_watermarks(
    consumer: &StreamConsumer<Rebalances>,
    topic: &str,
    brokers: &str,
) -> Result<HashMap<i32, i64>> {
    let md = tokio::task::block_in_place(|| consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT))
        .with_context(|| format!("connecting to Kafka at {brokers}"))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        anyhow::bail!("topic {topic} does not exist on Kafka at {brokers}");
    }
    let mut out = HashMap::new();
    for p in partitions {
        let (_, hi) = tokio::task::block_in_place(|| consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT))
            .with_context(|| format!("reading the end offsets of {topic}/{p}"))?;
        out.insert(p, hi);
    }
    Ok(out)
}
