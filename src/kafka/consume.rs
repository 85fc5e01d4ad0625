//! Consuming in batches: a stage takes a batch, writes every output of it, and
//! only then commits the batch's offsets (`crate::delivery`). Three ways to
//! read (`Reading`): `--follow` as a consumer group until a signal; bounded, as
//! a consumer group, up to the high watermarks seen at start; or exactly the
//! offset ranges an upstream run produced (`--from-summary`), with no group at
//! all, as Spark's batch queries read `startingOffsets`..`endingOffsets`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::ClientOpts;
use super::{Batch, METADATA_TIMEOUT, client_config};
use crate::delivery::{Ranges, Span};

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

/// Logs rebalances and counts revocations: a batch being collected when its
/// partitions were revoked is dropped (`Source::next_batch`), and a stage's
/// open transaction aborted, so that no output is made of records the group
/// now gives to another member (who reads them from the last commit). The
/// partitions held are a gauge: a `--follow` stage is ready once it has some.
pub struct Rebalances {
    stage: &'static str,
    revocations: AtomicU64,
    /// How many partitions the group gave this consumer (eager rebalancing: all at once).
    held: AtomicUsize,
}

impl ClientContext for Rebalances {
    fn error(&self, error: KafkaError, reason: &str) {
        super::client_error(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        super::client_log(level, fac, message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        super::requests::record("consumer", statistics);
    }
}

impl ConsumerContext for Rebalances {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let held = metrics::gauge!("rtds_partitions_assigned", "stage" => self.stage);
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %describe(tpl), "partitions assigned");
                held.set(tpl.count() as f64);
                self.held.store(tpl.count(), Ordering::SeqCst);
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = %describe(tpl), "partitions revoked");
                self.revocations.fetch_add(1, Ordering::SeqCst);
                held.set(0.0);
                self.held.store(0, Ordering::SeqCst);
            }
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
    }

    /// The answer to a commit (`Source::commit` sends them without waiting).
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(
                offsets = %describe(offsets),
                "committing offsets: {e}; the next commit of these partitions, or the run's last, stores them"
            );
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect::<Vec<_>>().join(",")
}

/// How long a stage waits for the first record of a batch before it reports
/// itself idle with an empty batch.
const IDLE: Duration = Duration::from_millis(250);
/// How long a caught-up batch stays open for the rest of what was sent with
/// its first record: a producer sends a request per partition, and the broker
/// appends them one after another, so a fetch may come back with the first
/// only (bench/README.md, "One batch a window").
pub const GATHER: Duration = Duration::from_millis(3);
/// How long a batch not at its high watermarks waits for a record once none
/// came: reading committed records only, it can lag behind the high
/// watermark for good. A topic written in transactions ends each one with a
/// marker (an offset no reader gets), and the records of a transaction still
/// open come only at its commit, so waiting out `--max-wait` for them added
/// 20 ms to each batch (bench/README.md, "Reading transactions"). librdkafka
/// keeps the last stable offset to itself (no API gives it).
const QUIET: Duration = Duration::from_millis(2);

/// How long an open batch (its first record at `first`, its latest at
/// `latest`) waits at `now` for another record when none is waiting; `None`:
/// it closes now. `caught_up`: it read its partitions to their high
/// watermarks; `lacking`: it holds fewer partitions than the group gave.
fn patience(
    now: Instant,
    first: Instant,
    latest: Instant,
    caught_up: bool,
    lacking: bool,
    max_wait: Duration,
) -> Option<Duration> {
    let open = now.saturating_duration_since(first);
    let left = max_wait.saturating_sub(open);
    let wait = match (caught_up, lacking) {
        (true, true) => left.min(GATHER.saturating_sub(open)),
        (true, false) => Duration::ZERO,
        (false, _) => left.min(QUIET.saturating_sub(now.saturating_duration_since(latest))),
    };
    (!wait.is_zero()).then_some(wait)
}

/// How a stage reads its input topic.
#[derive(Debug, Clone)]
pub enum Reading {
    /// As consumer group `group`, until a signal (`--follow`); a static
    /// member `instance` of it if given (`group.instance.id`).
    Follow { group: String, instance: Option<String> },
    /// As consumer group `group`, up to the end each partition had at start.
    ToEnd { group: String, instance: Option<String> },
    /// Exactly these offsets per partition (an upstream run's output), with no
    /// consumer group: nothing is committed, a rerun reads the same records.
    Ranges(BTreeMap<i32, Span>),
}

impl Reading {
    /// The consumer group, or `range` for a run over explicit offsets.
    pub fn name(&self) -> &str {
        match self {
            Reading::Follow { group, .. } | Reading::ToEnd { group, .. } => group,
            Reading::Ranges(_) => "range",
        }
    }
}

/// A topic read in batches.
pub struct Source {
    /// Shared with the task that measures the lag.
    pub consumer: Arc<StreamConsumer<Rebalances>>,
    pub profile: Profile,
    topic: String,
    /// The consumer group, unless the run reads explicit ranges.
    group: Option<String>,
    /// Bounded mode: per partition, the offset to stop before.
    targets: Option<HashMap<i32, i64>>,
    /// Bounded mode: partitions that reached their target.
    done: HashMap<i32, bool>,
    /// When the group's committed offsets were last read (`done_by_the_group`).
    group_checked: Option<Instant>,
    /// Since when the brokers have been reported unreachable, if they are.
    unreachable_since: Option<Instant>,
    /// The last batch's records and bytes: the next one's room.
    room: (usize, usize),
    /// Per partition, the offset the latest commit asked for (the next to
    /// read): the run's last commit sends them all again, synchronously.
    committed: HashMap<i32, i64>,
    /// Offsets committed since the last were sent (`COMMIT_EVERY`).
    unsent: HashMap<i32, i64>,
    /// When offsets were last sent to the group coordinator.
    sent_at: Option<Instant>,
    /// Per partition, the offset read last since it was assigned (or, reading
    /// ranges, the one before the first): the next batch's records follow it
    /// with no seek between, whatever offsets (markers) lie between them.
    read_to: HashMap<i32, i64>,
    /// `read_to` as it was when the latest batch began (`spans`).
    batch_from: HashMap<i32, i64>,
    /// Bounded mode: partitions whose end came below their target (an open
    /// transaction holds the rest back from a read_committed reader), since when.
    short: HashMap<i32, Instant>,
    end_wait: Duration,
    /// What each partition's commits carry as metadata, if a stage said
    /// (`rtds aggregate`: where its emitted windows stood).
    metadata: HashMap<i32, String>,
}

/// How often a stage sends the offsets of its acknowledged batches to the
/// group coordinator. Each send is a request the broker writes to
/// `__consumer_offsets`, so one a batch is work for the broker at modest rates
/// (bench/README.md, "Why the defaults"). Offsets held back go with
/// the next send, when the input goes idle, or with the run's last commit; a
/// crash replays at most this much more (at least once, upserts by id).
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// How long a commit waits for the group coordinator to come back.
const COMMIT_RETRY_FOR: Duration = Duration::from_secs(60);

/// How long a bounded run waits for brokers that are reported unreachable.
const BROKERS_AWAY_FOR: Duration = Duration::from_secs(60);

/// Errors that mean a broker or the group coordinator is moving or briefly
/// unreachable, not that the request is wrong (a rebalance, a fenced member).
fn transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as E;
    matches!(
        code,
        E::NotCoordinator
            | E::CoordinatorNotAvailable
            | E::CoordinatorLoadInProgress
            | E::RequestTimedOut
            | E::OperationTimedOut
            | E::BrokerTransportFailure
            | E::AllBrokersDown
            | E::NetworkException
    )
}

/// A name for what a run over explicit ranges reads, the same for every
/// attempt at the same `scope` and ranges: the ranges' UUID (version 5).
pub fn range_key(scope: &str, spans: &BTreeMap<i32, Span>) -> uuid::Uuid {
    let text = spans.iter().map(|(p, s)| format!("{p}:{}-{}", s.first, s.last)).collect::<Vec<_>>().join(",");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{scope}/{text}").as_bytes())
}

/// The group a reader of explicit ranges goes by: named after the stage, the
/// topic and the ranges, so that a retry of the same run has the same one.
fn range_group(stage: &str, topic: &str, spans: &BTreeMap<i32, Span>) -> String {
    format!("rtds-range-{stage}-{}", range_key(&format!("{stage}/{topic}"), spans))
}

/// An exactly-once run over explicit ranges commits their end offsets under
/// `group` in the transaction that writes its outputs: found there, the ranges
/// were written by an earlier attempt, whose outputs are visible. Writing them
/// again would duplicate every one (the attempt's summary, which says where
/// they are, was lost with it), so the run stops with an error instead.
fn refuse_a_range_done(
    consumer: &StreamConsumer<Rebalances>,
    topic: &str,
    spans: &BTreeMap<i32, Span>,
    group: &str,
) -> Result<()> {
    let partitions: Vec<i32> = spans.keys().copied().collect();
    let committed = tokio::task::block_in_place(|| super::offsets::committed(consumer, topic, &partitions))
        .with_context(|| format!("reading the offsets committed under {group}"))?;
    let done = !spans.is_empty() && spans.iter().all(|(p, s)| committed[p].is_some_and(|at| at > s.last));
    if done {
        anyhow::bail!(
            "the offsets this run reads from {topic} were written, exactly once, by an earlier attempt \
             (committed under {group}): writing them again would duplicate them; its summary was lost \
             with it, so rerun the pipeline from the stage before"
        );
    }
    Ok(())
}

/// Refuse the settings that select incremental rebalancing (the
/// `cooperative-sticky` assignor, the KIP-848 `consumer` protocol). A stage
/// drops the batch it is collecting and aborts its open transaction when
/// partitions are revoked, and relies on the group handing every partition
/// out again from its last commit: true of the eager protocol, where every
/// partition is revoked; under incremental rebalancing the partitions kept
/// would go on after the dropped records, and those would be lost.
/// A consuming stage checks it first, before it touches a topic or a store.
pub fn check_consumer_settings(client: &ClientOpts) -> Result<()> {
    refuse_incremental_rebalancing(&client_config(client, &[])?)
}

fn refuse_incremental_rebalancing(config: &rdkafka::ClientConfig) -> Result<()> {
    let strategy = config.get("partition.assignment.strategy").unwrap_or_default();
    if strategy.split(',').any(|s| s.trim().eq_ignore_ascii_case("cooperative-sticky")) {
        return crate::error::usage(format!(
            "partition.assignment.strategy={strategy} selects incremental rebalancing, which rtds refuses: \
             records collected from partitions kept across a rebalance would be dropped and never re-read; \
             use range or roundrobin"
        ));
    }
    if let Some(protocol) = config.get("group.protocol").filter(|p| !p.eq_ignore_ascii_case("classic")) {
        return crate::error::usage(format!(
            "group.protocol={protocol} selects incremental rebalancing, which rtds refuses: \
             records collected from partitions kept across a rebalance would be dropped and never re-read; \
             use group.protocol=classic"
        ));
    }
    Ok(())
}

/// How often an idle bounded run asks for its group's committed offsets, and how long it waits.
const GROUP_CHECK_EVERY: Duration = Duration::from_secs(2);
const GROUP_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A consumer's prefetch of `mb` MB (a stage's `Profile::prefetch_mb`), as
/// librdkafka settings; the bare baselines (bench/) read with them too.
/// Fetches keep librdkafka's defaults (`fetch.min.bytes` 1, `fetch.wait.max.ms`
/// 500): the broker answers as soon as a record is there, and an idle consumer
/// asks twice a second. Holding fetches for more bytes cost an idle stage a
/// fetch every wait and a record its latency (bench/README.md, "Cheap at the
/// rates users run"); the number of fetches at modest rates is set upstream,
/// by how often the producer sends (`LINGER_STREAM`).
pub fn prefetch_settings(mb: u32) -> [(&'static str, String); 4] {
    [
        // Prefetch bounded to about a batch: enough to keep a stage busy
        // (it works on one batch while the next is read), little memory.
        // A record larger than these still comes through (the broker
        // returns at least one record batch per fetch).
        ("queued.max.messages.kbytes", (mb * 1024).to_string()),
        ("fetch.max.bytes", (mb << 20).to_string()),
        ("max.partition.fetch.bytes", (mb << 19).to_string()),
        // Once the queue is full, fetching pauses for fetch.queue.backoff.ms
        // (default 1 s: a stall per batch); resume almost at once instead.
        ("fetch.queue.backoff.ms", "5".to_owned()),
    ]
}

impl Source {
    /// Open `topic` for reading as `reading` says, prefetching as the stage's
    /// profile says; a bounded reading fails if records below its end stay
    /// unreadable for `end_wait` (`--end-wait`).
    pub async fn open(
        client: &ClientOpts,
        profile: &Profile,
        topic: &str,
        reading: &Reading,
        end_wait: Duration,
    ) -> Result<Self> {
        let (group, instance) = match reading {
            Reading::Follow { group, instance } | Reading::ToEnd { group, instance } => {
                (Some(group.clone()), instance.as_deref())
            }
            Reading::Ranges(_) => (None, None),
        };
        let prefetch = prefetch_settings(profile.prefetch_mb);
        let mut settings = vec![
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            // A group with no commit starts at the beginning; offsets given
            // that are gone (retention) are an error, not a jump elsewhere.
            ("auto.offset.reset", if group.is_some() { "earliest" } else { "error" }),
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "true"),
        ];
        settings.extend(prefetch.iter().map(|(k, v)| (*k, v.as_str())));
        // librdkafka wants a group id even to assign partitions: a reader of
        // explicit ranges gets one named after what it reads, never joined;
        // only an exactly-once run commits to it, once, with its transaction.
        let reader = match reading {
            Reading::Ranges(spans) => range_group(profile.stage, topic, spans),
            _ => String::new(),
        };
        settings.push(("group.id", group.as_deref().unwrap_or(&reader)));
        if let Some(instance) = instance {
            // Static membership: a restart takes the same partitions back at
            // once, without a rebalance or waiting out its old self's session.
            settings.push(("group.instance.id", instance));
        }
        let consumer: StreamConsumer<Rebalances> = client_config(client, &settings)?
            .create_with_context(Rebalances {
                stage: profile.stage,
                revocations: AtomicU64::new(0),
                held: AtomicUsize::new(0),
            })
            .with_context(|| format!("creating a Kafka consumer for {}", client.brokers))?;
        let targets = match reading {
            Reading::Follow { .. } => None,
            Reading::ToEnd { .. } => Some(high_watermarks(&consumer, client, topic)?),
            Reading::Ranges(spans) => Some(spans.iter().map(|(p, s)| (*p, s.last + 1)).collect()),
        };
        match reading {
            Reading::Ranges(spans) => {
                refuse_a_range_done(&consumer, topic, spans, &reader)?;
                let mut tpl = TopicPartitionList::new();
                for (p, s) in spans {
                    tpl.add_partition_offset(topic, *p, Offset::Offset(s.first))
                        .context("building the offsets to read")?;
                }
                consumer.assign(&tpl).with_context(|| format!("reading {topic} at the offsets given"))?;
            }
            _ => consumer.subscribe(&[topic]).with_context(|| format!("subscribing to {topic}"))?,
        }
        let done = targets.iter().flatten().map(|(p, hi)| (*p, *hi == 0)).collect();
        let read_to = match reading {
            Reading::Ranges(spans) => spans.iter().map(|(p, s)| (*p, s.first - 1)).collect(),
            _ => HashMap::new(),
        };
        let consumer = Arc::new(consumer);
        Ok(Self {
            consumer,
            profile: *profile,
            topic: topic.to_owned(),
            group,
            targets,
            done,
            group_checked: None,
            unreachable_since: None,
            room: (0, 0),
            committed: HashMap::new(),
            unsent: HashMap::new(),
            metadata: HashMap::new(),
            sent_at: None,
            read_to,
            batch_from: HashMap::new(),
            short: HashMap::new(),
            end_wait,
        })
    }

    /// Partitions were revoked while a batch was collected (the rebalance
    /// runs inside `recv`): drop the records that came before. The group hands
    /// each partition out again from its last commit, this consumer included,
    /// so they are read again; the records that come after are of the new
    /// assignment, read from there.
    fn drop_revoked(done: &mut HashMap<i32, bool>, bounded: bool, batch: &mut Batch) {
        if batch.is_empty() {
            return;
        }
        tracing::info!(
            records = batch.len(),
            "partitions revoked mid-batch: the records before are dropped and re-read"
        );
        if bounded {
            for r in batch.iter() {
                done.insert(r.partition(), false);
            }
        }
        batch.clear();
    }

    /// Where the latest batch's records were, per partition: from the offset
    /// after the one read before it (when the consumer went on without a
    /// seek) to its last. Batches read one after another then make one span,
    /// across the transaction markers between them, and a span of a summary
    /// says every record in it was read.
    pub fn spans(&self, batch: &Batch) -> Ranges {
        let mut spans = batch.spans();
        for (p, before) in &self.batch_from {
            spans.extend_back(&self.topic, *p, before + 1);
        }
        spans
    }

    /// How many partitions the group gave this consumer (none when it reads ranges).
    fn partitions_held(&self) -> usize {
        self.consumer.context().held.load(Ordering::SeqCst)
    }

    /// How many times partitions were taken from this consumer so far.
    pub fn revocations(&self) -> u64 {
        self.consumer.context().revocations.load(Ordering::SeqCst)
    }

    /// Whether a batch (where it read, `batch`) read its partitions to their end as the brokers last
    /// reported it (the high watermark of the latest fetch, kept by librdkafka:
    /// no request is made). A batch that came back short is then the input
    /// caught up; otherwise only a fetch slower than `--max-wait`, and an
    /// exactly-once stage keeps its transaction open instead of committing.
    pub fn caught_up(&self, batch: &Ranges) -> bool {
        self.at_high_watermarks(batch.of(&self.topic).iter().map(|(&p, span)| (p, span.last)))
    }

    /// Whether `partition` holds records at or after `next`, as the latest
    /// fetch reported its end (no request is made; not known yet: it may).
    pub fn has_more(&self, partition: i32, next: i64) -> bool {
        self.high_watermark(partition).is_none_or(|high| next < high)
    }

    /// Whether each (partition, offset read last) is the last record the
    /// latest fetch of that partition reported (its high watermark less one).
    /// Not known (no fetch response yet): say caught up, as before this check.
    fn at_high_watermarks(&self, read: impl IntoIterator<Item = (i32, i64)>) -> bool {
        read.into_iter().all(|(partition, last)| self.high_watermark(partition).is_none_or(|high| last + 1 >= high))
    }

    /// The end of `partition` as its latest fetch reported it, kept by
    /// librdkafka (no request is made), if one came.
    fn high_watermark(&self, partition: i32) -> Option<i64> {
        let client = self.consumer.client().native_ptr();
        let topic = std::ffi::CString::new(self.topic.as_str()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client outlives the call (self holds it); topic is a
        // NUL-terminated string; low and high are valid for writes.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(client, topic.as_ptr(), partition, &mut low, &mut high)
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
    }

    /// The consumer group's metadata, for a transaction to commit offsets
    /// with: the run's group, or the one named after the ranges it reads
    /// (an exactly-once range run marks them done in its one transaction).
    pub fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    /// A bounded run in a group that a `--follow` service of the same stage is
    /// also in may hold only some partitions, or none: a partition whose
    /// committed offset reached the target was done by another member. Asked
    /// when the input is idle, at most every `GROUP_CHECK_EVERY`; an answer
    /// that does not come (the group is rebalancing) is asked again later.
    fn done_by_the_group(&mut self) {
        if self.group_checked.is_some_and(|t| t.elapsed() < GROUP_CHECK_EVERY) {
            return;
        }
        self.group_checked = Some(Instant::now());
        if let Err(e) = self.read_group_progress() {
            tracing::debug!("{e:#}");
        }
    }

    fn read_group_progress(&mut self) -> Result<()> {
        let (Some(targets), Some(group)) = (&self.targets, &self.group) else { return Ok(()) };
        let mut open = TopicPartitionList::new();
        for (p, _) in self.done.iter().filter(|(_, d)| !**d) {
            open.add_partition(&self.topic, *p);
        }
        if open.count() == 0 {
            return Ok(());
        }
        let committed = tokio::task::block_in_place(|| self.consumer.committed_offsets(open, GROUP_CHECK_TIMEOUT))
            .with_context(|| format!("reading the committed offsets of group {group}"))?;
        for e in committed.elements() {
            if let (Offset::Offset(at), Some(target)) = (e.offset(), targets.get(&e.partition()))
                && at >= *target
            {
                self.done.insert(e.partition(), true);
            }
        }
        Ok(())
    }

    /// A bounded run's partition `p` reached its end for now: done if the
    /// consumer's position is at its target, past the transaction markers
    /// that may end it. Below it, an open transaction holds the rest back
    /// (read_committed): waited for up to `end_wait`, then an error naming the
    /// partition and offsets, never a run that stops short and exits 0.
    fn reached_end(&mut self, p: i32) -> Result<()> {
        let Some(&target) = self.targets.as_ref().and_then(|t| t.get(&p)) else { return Ok(()) };
        if self.done.get(&p) == Some(&true) {
            self.short.remove(&p);
            return Ok(());
        }
        let at = match self.position(p) {
            Some(at) => at,
            // Nothing read since the partition was assigned: it starts at the group's commit.
            None => self.committed_offset(p).unwrap_or(-1),
        };
        if at >= target {
            self.done.insert(p, true);
            self.short.remove(&p);
            return Ok(());
        }
        let since = *self.short.entry(p).or_insert_with(Instant::now);
        if since.elapsed() > self.end_wait {
            anyhow::bail!(
                "{}/{p} ends at offset {at} for {:?}, below {target}, the end this run must reach: records \
                 there cannot be read yet (an open transaction holds them back from a read_committed reader); \
                 the run stops here, uncommitted beyond offset {at}",
                self.topic,
                self.end_wait
            );
        }
        Ok(())
    }

    /// The input is idle: each partition this consumer holds that is not
    /// done has reached its end for now (an end of partition is not always
    /// reported where an open transaction holds a read_committed reader).
    fn check_ends(&mut self) -> Result<()> {
        if self.targets.is_none() {
            return Ok(());
        }
        let held = self.consumer.assignment().context("reading the partitions assigned")?;
        let open: Vec<i32> = held
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .filter(|p| self.done.get(p) == Some(&false))
            .collect();
        for p in open {
            self.reached_end(p)?;
        }
        Ok(())
    }

    /// The offset the consumer reads next in partition `p`, once it has read
    /// there (transaction markers included).
    fn position(&self, p: i32) -> Option<i64> {
        let position = self.consumer.position().ok()?;
        match position.find_partition(&self.topic, p)?.offset() {
            Offset::Offset(at) => Some(at),
            _ => None,
        }
    }

    /// The group's committed offset of partition `p`, if the run has a group and it has one.
    fn committed_offset(&self, p: i32) -> Option<i64> {
        self.group.as_ref()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, p);
        let committed =
            tokio::task::block_in_place(|| self.consumer.committed_offsets(tpl, GROUP_CHECK_TIMEOUT)).ok()?;
        match committed.find_partition(&self.topic, p)?.offset() {
            Offset::Offset(at) => Some(at),
            _ => None,
        }
    }

    /// True once every partition has been read up to its start-time high
    /// watermark (bounded mode only).
    fn finished(&self) -> bool {
        self.targets.is_some() && self.done.values().all(|d| *d)
    }

    /// Up to `max` records, waiting at most `max_wait` once the first arrived;
    /// empty if none came for `IDLE` (the stage is idle, not over). A batch
    /// closes when no record is waiting, it read its partitions to their high
    /// watermarks, and it holds every partition the group gave the consumer
    /// or is `GATHER` old: whatever comes next is not written yet, and waiting
    /// longer would only add latency (the records that come together are the
    /// ones the producer upstream sent together: `LINGER_STREAM`). Short of
    /// the high watermarks it closes once no record came for `QUIET` (the
    /// rest may be a transaction not committed yet: `patience`).
    /// `None` when the run is over: bounded and drained, or a signal arrived.
    pub async fn next_batch(
        &mut self,
        max: usize,
        max_wait: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Batch>> {
        let mut batch = Batch::with_room(&self.topic, self.room);
        let mut first_at: Option<Instant> = None;
        // When the batch's latest record came (read once it has a first).
        let mut latest_at = Instant::now();
        // The offset read last in each partition of this batch.
        let mut read: HashMap<i32, i64> = HashMap::new();
        let mut revocations = self.revocations();
        self.batch_from.clone_from(&self.read_to);
        loop {
            if batch.len() >= max || *shutdown.borrow() {
                break;
            }
            if self.finished() {
                break;
            }
            if first_at.is_some_and(|t| t.elapsed() >= max_wait) {
                break;
            }
            // A record already here is taken without waiting (`recv` polls
            // librdkafka's queue once when first polled).
            let ready = match first_at {
                Some(_) => self.consumer.recv().now_or_never(),
                None => None,
            };
            let received = match ready {
                Some(r) => Ok(r),
                None => {
                    // Caught up with the input: the batch is what there is. What
                    // the producer upstream sent together lands a moment apart
                    // (a produce request per partition), so while the batch
                    // lacks some of the group's partitions it gathers for
                    // `GATHER`. Short of the high watermarks, it waits for
                    // more as long as records keep coming (`QUIET`).
                    let caught_up =
                        first_at.is_some_and(|_| self.at_high_watermarks(read.iter().map(|(&p, &o)| (p, o))));
                    let wait = match first_at {
                        Some(first) => {
                            let lacking = read.len() < self.partitions_held();
                            match patience(Instant::now(), first, latest_at, caught_up, lacking, max_wait) {
                                Some(wait) => wait,
                                None if caught_up => break,
                                None => Duration::ZERO,
                            }
                        }
                        // The first record of a batch is waited for longest.
                        None => IDLE,
                    };
                    let r = tokio::select! {
                        r = tokio::time::timeout(wait, self.consumer.recv()) => r,
                        _ = shutdown.changed() => break,
                    };
                    if caught_up && r.is_err() {
                        break;
                    }
                    r
                }
            };
            match received {
                // Nothing for a while: an empty batch, so the caller can commit
                // what was acknowledged meanwhile.
                Err(_) => {
                    self.done_by_the_group();
                    self.check_ends()?;
                    break;
                }
                Ok(Err(KafkaError::PartitionEOF(p))) => {
                    self.unreachable_since = None;
                    self.reached_end(p)?;
                }
                // The brokers are briefly away (one restarting): librdkafka
                // reconnects on its own. A bounded run gives up after
                // `BROKERS_AWAY_FOR`; a --follow service rides it out.
                Ok(Err(KafkaError::MessageConsumption(code)))
                    if transient(code)
                        && (self.targets.is_none()
                            || self.unreachable_since.get_or_insert_with(Instant::now).elapsed()
                                < BROKERS_AWAY_FOR) =>
                {
                    tracing::warn!(topic = %self.topic, "consuming: {code}; waiting for the brokers");
                }
                Ok(Err(e)) => {
                    let by = self.group.as_deref().map_or_else(|| "offset range".to_owned(), |g| format!("group {g}"));
                    return Err(e).with_context(|| format!("consuming {} ({by})", self.topic));
                }
                Ok(Ok(m)) => {
                    self.unreachable_since = None;
                    if self.revocations() != revocations {
                        Self::drop_revoked(&mut self.done, self.targets.is_some(), &mut batch);
                        // Handed out again from the last commit: not where this consumer goes on from.
                        self.read_to.clear();
                        self.batch_from.clear();
                        revocations = self.revocations();
                        first_at = None;
                        read.clear();
                    }
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
                    read.insert(p, m.offset());
                    self.read_to.insert(p, m.offset());
                    batch.push(&m);
                    latest_at = Instant::now();
                    first_at.get_or_insert(latest_at);
                }
            }
        }
        if self.revocations() != revocations {
            // Revoked after the last record came: every one is from before.
            Self::drop_revoked(&mut self.done, self.targets.is_some(), &mut batch);
            self.read_to.clear();
            self.batch_from.clear();
        }
        if batch.is_empty() && (self.finished() || *shutdown.borrow()) {
            return Ok(None);
        }
        if !batch.is_empty() {
            self.room = batch.size();
        }
        Ok(Some(batch))
    }

    /// Commit a batch's offsets (those after its last records), once its
    /// outputs are acknowledged: sent at most every `COMMIT_EVERY`, with
    /// whatever later batches committed meanwhile (`send_commits`). Sent
    /// without waiting for the group coordinator's answer: a round trip per
    /// batch on the stage's main task (bench/README.md, "Where the
    /// transform's wall time goes"). A commit that fails is logged
    /// (`Rebalances::commit_callback`) and covered by the next one of its
    /// partitions or by `commit_last`; until then its records would be read
    /// again after a crash (at least once: never lost).
    pub fn commit(&mut self, offsets: &TopicPartitionList) -> Result<()> {
        if self.group.is_none() || offsets.count() == 0 {
            return Ok(());
        }
        for e in offsets.elements_for_topic(&self.topic) {
            if let Offset::Offset(next) = e.offset() {
                for map in [&mut self.committed, &mut self.unsent] {
                    let at = map.entry(e.partition()).or_insert(next);
                    *at = (*at).max(next);
                }
            }
        }
        if self.sent_at.is_none_or(|t| t.elapsed() >= COMMIT_EVERY) {
            self.send_commits()?;
        }
        Ok(())
    }

    /// Send the offsets committed since the last send, without waiting (the
    /// stage calls it when its input is idle, so that the group's position
    /// does not stay behind while nothing comes).
    pub fn send_commits(&mut self) -> Result<()> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        self.sent_at = Some(Instant::now());
        let unsent = std::mem::take(&mut self.unsent);
        match self.held(&unsent)? {
            Some(offsets) => self.commit_with(&offsets, CommitMode::Async),
            None => Ok(()),
        }
    }

    /// The run's last commit: every offset the run committed, again, waiting
    /// for the coordinator's answer, so the group's position is known to be
    /// stored when the stage exits. A coordinator that is moving or coming
    /// back (a broker restarting) is waited for, up to `COMMIT_RETRY_FOR`:
    /// failing there would replay the batches and, for the rerun, wait out
    /// the old member's session. A run over explicit ranges commits nothing.
    pub fn commit_last(&mut self) -> Result<()> {
        self.unsent.clear();
        match self.held(&self.committed)? {
            Some(all) => self.commit_with(&all, CommitMode::Sync),
            None => Ok(()),
        }
    }

    /// The metadata `partition`'s commits carry from now on.
    pub fn set_commit_metadata(&mut self, partition: i32, metadata: String) {
        self.metadata.insert(partition, metadata);
    }

    /// The group's last commit of `partition`, its offset and metadata (none
    /// if it has none, or the run no group), asking the coordinator.
    pub fn committed_metadata(&self, partition: i32) -> Result<Option<(i64, String)>> {
        if self.group.is_none() {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        let committed = tokio::task::block_in_place(|| self.consumer.committed_offsets(tpl, GROUP_CHECK_TIMEOUT * 5))
            .with_context(|| format!("reading the committed offset of {}/{partition}", self.topic))?;
        Ok(committed.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) => Some((o, e.metadata().to_owned())),
            _ => None,
        }))
    }

    /// `offsets` (per partition, the next to read) of the partitions this
    /// member holds now, if any: one the group gave to another member since
    /// may have moved on there, and must not be set back.
    fn held(&self, offsets: &HashMap<i32, i64>) -> Result<Option<TopicPartitionList>> {
        if self.group.is_none() || offsets.is_empty() {
            return Ok(None);
        }
        let held = self.consumer.assignment().context("reading the partitions assigned")?;
        let mut tpl = TopicPartitionList::new();
        for (p, next) in offsets {
            if held.find_partition(&self.topic, *p).is_some() {
                let mut e = tpl.add_partition(&self.topic, *p);
                e.set_offset(Offset::Offset(*next)).context("building the offsets to commit")?;
                if let Some(m) = self.metadata.get(p) {
                    e.set_metadata(m);
                }
            }
        }
        Ok((tpl.count() > 0).then_some(tpl))
    }

    fn commit_with(&self, offsets: &TopicPartitionList, mode: CommitMode) -> Result<()> {
        let Some(group) = &self.group else { return Ok(()) };
        let started = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match self.consumer.commit(offsets, mode) {
                Ok(()) => return Ok(()),
                Err(KafkaError::ConsumerCommit(code)) if transient(code) && started.elapsed() < COMMIT_RETRY_FOR => {
                    tracing::warn!(group, retry_in = ?wait, "committing offsets: {code}; retrying");
                    tokio::task::block_in_place(|| std::thread::sleep(wait));
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("committing offsets of {} for group {group}", self.topic));
                }
            }
        }
    }
}

/// Records between the consumer's position and the end of each partition it
/// holds (blocking: it asks the brokers).
pub fn lag(consumer: &StreamConsumer<Rebalances>) -> Option<i64> {
    let position = consumer.position().ok()?;
    let mut lag = 0;
    for e in position.elements() {
        let (_, hi) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2)).ok()?;
        if let Offset::Offset(pos) = e.offset() {
            lag += (hi - pos).max(0);
        }
    }
    Some(lag)
}

/// Per partition of `topic`, its high watermark now.
fn high_watermarks(
    consumer: &StreamConsumer<Rebalances>,
    client: &ClientOpts,
    topic: &str,
) -> Result<HashMap<i32, i64>> {
    let marks = tokio::task::block_in_place(|| super::offsets::watermarks(consumer, client, topic))?;
    Ok(marks.into_iter().map(|(p, (_, high))| (p, high)).collect())
}

/// Hand every record of `topic` at the offsets of `spans` to `each`, reading
/// as the stages do (read_committed: records of aborted transactions are
/// skipped). Each partition is read until a record at or after its span's
/// last offset came; an end of partition before that is waited out (an open
/// transaction holds the records after it back), and the read fails, naming
/// the partition and offsets, if nothing comes for `stall`. Offsets that are
/// no longer in the topic (retention deleted them) are an error, never an
/// empty read. Blocking.
pub fn read_spans(
    client: &ClientOpts,
    topic: &str,
    spans: &BTreeMap<i32, Span>,
    stall: Duration,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<()> {
    use rdkafka::consumer::BaseConsumer;
    if spans.is_empty() {
        return Ok(());
    }
    let reader = format!("rtds-range-{}", uuid::Uuid::new_v4());
    let consumer: BaseConsumer = client_config(
        client,
        &[
            ("group.id", &reader),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "true"),
            // An offset out of range is an error, not a jump to another one.
            ("auto.offset.reset", "error"),
        ],
    )?
    .create()
    .with_context(|| format!("creating a Kafka consumer for {}", client.brokers))?;
    let mut tpl = TopicPartitionList::new();
    for (p, s) in spans {
        let (low, _) = consumer
            .fetch_watermarks(topic, *p, METADATA_TIMEOUT)
            .with_context(|| format!("reading the offsets {topic}/{p} holds on Kafka at {}", client.brokers))?;
        if low > s.first {
            anyhow::bail!(
                "offsets {}..={} of {topic}/{p} are no longer in the topic, which now starts at {low} \
                 (retention deleted them): what they held cannot be read back",
                s.first,
                s.last
            );
        }
        tpl.add_partition_offset(topic, *p, Offset::Offset(s.first)).context("building the offsets to read")?;
    }
    consumer.assign(&tpl).with_context(|| format!("reading {topic} on Kafka at {}", client.brokers))?;
    let mut open: HashMap<i32, i64> = spans.iter().map(|(p, s)| (*p, s.last)).collect();
    // Per partition, the offset read last (none yet: before the span's first).
    let mut reached: HashMap<i32, i64> = spans.iter().map(|(p, s)| (*p, s.first - 1)).collect();
    let mut last_progress = Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            // The end for now: the rest may be held back by an open transaction.
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {topic} back")),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let Some(last) = open.get(&m.partition()).copied() else { continue };
                reached.insert(m.partition(), m.offset());
                if m.offset() <= last {
                    each(&m);
                }
                if m.offset() >= last {
                    open.remove(&m.partition());
                }
                continue;
            }
        }
        if last_progress.elapsed() > stall {
            let left: Vec<String> =
                open.iter().map(|(p, last)| format!("{topic}/{p} read up to {} of {last}", reached[p])).collect();
            anyhow::bail!(
                "reading {topic} back stalled for {stall:?}: {} (an open transaction holds the rest back, \
                 or the records are gone)",
                left.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_waits_for_its_partitions_briefly_and_for_records_while_they_come() {
        let ms = Duration::from_millis;
        let first = Instant::now();
        let at = |t: u64| first + ms(t);
        let max_wait = ms(20);
        // At the high watermarks, holding every partition: closes at once.
        assert_eq!(patience(at(1), first, at(1), true, false, max_wait), None);
        // At them, a partition lacking: gathers until GATHER after the first record.
        assert_eq!(patience(at(1), first, at(1), true, true, max_wait), Some(GATHER - ms(1)));
        assert_eq!(patience(at(3), first, at(3), true, true, max_wait), None);
        // Short of them (more fetched, or a transaction still open): waits
        // QUIET after the latest record, never past max_wait.
        assert_eq!(patience(at(1), first, at(1), false, false, max_wait), Some(QUIET));
        assert_eq!(patience(at(2), first, at(1), false, true, max_wait), Some(QUIET - ms(1)));
        assert_eq!(patience(at(6), first, at(1), false, false, max_wait), None);
        assert_eq!(patience(at(19), first, at(19), false, false, max_wait), Some(ms(1)));
        assert_eq!(patience(at(20), first, at(20), false, false, max_wait), None);
    }

    #[test]
    fn incremental_rebalancing_is_refused_eager_is_taken() {
        let config = |k: &str, v: &str| {
            let mut c = rdkafka::ClientConfig::new();
            c.set(k, v);
            c
        };
        for (k, v) in [
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("partition.assignment.strategy", "range, Cooperative-Sticky"),
            ("group.protocol", "consumer"),
        ] {
            let err = refuse_incremental_rebalancing(&config(k, v)).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2, "{k}={v}");
            assert!(err.to_string().contains(&format!("{k}={v}")), "{err}");
        }
        for (k, v) in
            [("partition.assignment.strategy", "range,roundrobin"), ("group.protocol", "classic"), ("client.id", "x")]
        {
            assert!(refuse_incremental_rebalancing(&config(k, v)).is_ok(), "{k}={v}");
        }
    }
}
