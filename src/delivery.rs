//! The delivery rule, in one place (after rust-rdkafka's examples/at_least_once.rs):
//! every output of a consumed batch (a record to Kafka, a dead letter, a row
//! written to a store) is made under the batch's `BatchAck`; Kafka's delivery
//! reports and the store's acknowledgements are collected there; the batch's
//! offsets are committed only when every one of them succeeded, decided from
//! one consistent reading of the ack (`BatchAck::status`). With
//! `--exactly-once` the same rule decides inside a Kafka transaction
//! (`Transaction`), over several batches at a time.
//!
//! Counts travel one way: whoever makes an output counts it on the batch's ack
//! (`BatchAck::count`, or `Hold::release` for work done elsewhere); a batch's
//! counts are read from its `Status::Complete`, once, when it is committed.
//! Run-wide, `Deliveries` collects every delivery report with the offsets it
//! landed at, so a summary can say exactly what a run produced.

use std::collections::{BTreeMap, VecDeque};
use std::ops::AddAssign;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::producer::{Producer, ProducerContext};
use serde::{Deserialize, Serialize};

/// What a batch gave: in = out + dlq + filtered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub out: u64,
    pub dlq: u64,
    /// Records a custom SQL dropped (counted by the transform, never derived).
    pub filtered: u64,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.out += o.out;
        self.dlq += o.dlq;
        self.filtered += o.filtered;
    }
}

/// Everything the ack of one batch knows, changed and read under one lock.
#[derive(Debug, Default)]
struct AckState {
    /// Kafka records handed to the producer, and their reports so far.
    sent: u64,
    reported: u64,
    /// Outputs that failed: a delivery report with an error, a failed hold.
    failed: u64,
    /// Outputs made elsewhere (a store write) not yet released.
    holds: u64,
    counts: Counts,
    error: Option<String>,
}

/// The outputs of one consumed batch.
#[derive(Debug, Default)]
pub struct BatchAck {
    state: Mutex<AckState>,
}

/// One reading of a batch's ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Outputs are still awaited; `holding` when a store write (which keeps
    /// its own deadline) is among them.
    Waiting { holding: bool },
    /// Every output succeeded: the batch may be committed; what it gave.
    Complete(Counts),
    /// An output failed: the batch must never be committed; why.
    Failed(String),
}

impl BatchAck {
    fn lock(&self) -> MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The batch's state, read at one instant: a failure that arrives while
    /// the last report is counted cannot slip between two readings.
    pub fn status(&self) -> Status {
        let s = self.lock();
        if s.failed > 0 {
            let why = s.error.clone().unwrap_or_else(|| format!("{} output(s) of the batch failed", s.failed));
            Status::Failed(why)
        } else if s.holds == 0 && s.reported >= s.sent {
            Status::Complete(s.counts)
        } else {
            Status::Waiting { holding: s.holds > 0 }
        }
    }

    /// Count outputs made (or inputs filtered) for this batch.
    pub fn count(&self, c: Counts) {
        self.lock().counts += c;
    }

    /// A Kafka record is about to be handed to the producer under this batch.
    pub fn sending(&self) {
        self.lock().sent += 1;
    }

    /// A record's delivery report (or a send that failed before it had one).
    pub fn reported(&self, result: Result<(), String>) {
        let mut s = self.lock();
        s.reported += 1;
        if let Err(why) = result {
            s.failed += 1;
            s.error.get_or_insert(why);
        }
    }

    /// Keep the batch uncommitted until the returned hold is released.
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.lock().holds += 1;
        Hold { ack: self.clone(), live: true }
    }
}

/// Outputs of a batch made elsewhere (on a stage's worker task). A hold
/// dropped without `release` fails the batch: it is never committed.
#[derive(Debug)]
pub struct Hold {
    ack: Arc<BatchAck>,
    /// Still counted in the ack's holds.
    live: bool,
}

impl Hold {
    /// The batch this hold keeps uncommitted (its other outputs go under it).
    pub fn ack(&self) -> &Arc<BatchAck> {
        &self.ack
    }

    /// The outputs are made; what they were, counted with the release.
    pub fn release(mut self, counts: Counts) {
        let mut s = self.ack.lock();
        s.counts += counts;
        s.holds -= 1;
        self.live = false;
    }

    /// The output could not be written: the batch stays uncommitted.
    pub fn fail(mut self, why: String) {
        self.failing(why);
    }

    fn failing(&mut self, why: String) {
        let mut s = self.ack.lock();
        s.error.get_or_insert(why);
        s.failed += 1;
        s.holds -= 1;
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

/// The offsets of one topic partition a run read or wrote: `first..=last`,
/// `count` records among them (fewer than the span when other producers'
/// records or transaction markers lie between).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub first: i64,
    pub last: i64,
    pub count: u64,
    /// Made of spans that overlapped: some offsets were counted twice (a
    /// re-read after a rebalance, two summaries of one run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reread: bool,
}

impl Span {
    pub fn new(first: i64, last: i64, count: u64) -> Self {
        Self { first, last, count, reread: false }
    }
    /// Whether the two spans share an offset or `self` ends right before `o` begins.
    fn meets(&self, o: &Span) -> bool {
        self.first <= o.last.saturating_add(1) && o.first <= self.last.saturating_add(1)
    }
    fn overlaps(&self, o: &Span) -> bool {
        self.first <= o.last && o.first <= self.last
    }
    fn absorb(&mut self, o: &Span) {
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.count += o.count;
        self.reread |= o.reread;
    }
}

/// Spans by topic and partition (by topic first: adding an offset, once per
/// record, looks the topic up by `&str` without allocating). A partition holds
/// disjoint spans, in order: one reader's, or one producer's, offsets widen a
/// single span (`add`); spans of other batches, replicas or runs join it only
/// where they overlap or meet it (`add_span`), so that what nobody read stays a
/// hole between them, for reconcile to find.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ranges {
    spans: BTreeMap<String, BTreeMap<i32, Vec<Span>>>,
}

/// How a range is written in a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpan {
    pub topic: String,
    pub partition: i32,
    #[serde(flatten)]
    pub span: Span,
}

impl Ranges {
    fn partition(&mut self, topic: &str, partition: i32) -> &mut Vec<Span> {
        if !self.spans.contains_key(topic) {
            self.spans.insert(topic.to_owned(), BTreeMap::new());
        }
        let partitions = self.spans.get_mut(topic).expect("the topic's spans were just inserted");
        partitions.entry(partition).or_default()
    }

    /// Add one offset read or written by the same reader or producer as the
    /// partition's spans so far: it widens them into one.
    pub fn add(&mut self, topic: &str, partition: i32, offset: i64) {
        let spans = self.partition(topic, partition);
        match spans.as_mut_slice() {
            [only] => only.absorb(&Span::new(offset, offset, 1)),
            _ => {
                let mut all = Span::new(offset, offset, 1);
                for s in spans.drain(..) {
                    all.absorb(&s);
                }
                spans.push(all);
            }
        }
    }

    /// Add a span: joined with the spans it overlaps or meets, else kept apart.
    pub fn add_span(&mut self, topic: &str, partition: i32, span: Span) {
        let spans = self.partition(topic, partition);
        let mut joined = span;
        spans.retain(|s| {
            if !s.meets(&joined) {
                return true;
            }
            joined.reread |= s.overlaps(&joined);
            joined.absorb(s);
            false
        });
        let at = spans.partition_point(|s| s.first < joined.first);
        spans.insert(at, joined);
    }

    pub fn merge(&mut self, other: &Ranges) {
        for (t, partitions) in &other.spans {
            for (p, spans) in partitions {
                for s in spans {
                    self.add_span(t, *p, *s);
                }
            }
        }
    }

    /// Whether some offsets of `topic` were added twice (their records counted twice).
    pub fn reread(&self, topic: &str) -> bool {
        self.spans.get(topic).is_some_and(|ps| ps.values().flatten().any(|s| s.reread))
    }

    /// The spans of `topic`, by partition, each partition's as one: from its
    /// first offset to its last, every record counted.
    pub fn of(&self, topic: &str) -> BTreeMap<i32, Span> {
        let Some(partitions) = self.spans.get(topic) else { return BTreeMap::new() };
        partitions
            .iter()
            .filter_map(|(p, spans)| {
                let (first, rest) = spans.split_first()?;
                let mut all = *first;
                for s in rest {
                    all.absorb(s);
                }
                Some((*p, all))
            })
            .collect()
    }

    /// The disjoint spans of `topic`, by partition.
    pub fn spans(&self, topic: &str) -> BTreeMap<i32, Vec<Span>> {
        self.spans.get(topic).cloned().unwrap_or_default()
    }

    /// Records counted on `topic`.
    pub fn count(&self, topic: &str) -> u64 {
        self.spans.get(topic).map_or(0, |ps| ps.values().flatten().map(|s| s.count).sum())
    }

    /// Is `offset` of partition `p` of `topic` inside one of the spans?
    pub fn contains(&self, topic: &str, p: i32, offset: i64) -> bool {
        self.spans
            .get(topic)
            .and_then(|ps| ps.get(&p))
            .is_some_and(|spans| spans.iter().any(|s| s.first <= offset && offset <= s.last))
    }

    /// Start the span of partition `p` at `from` (the offset the reader had
    /// read up to before it, without a seek): the offsets between held no
    /// record for it (transaction markers, aborted records).
    pub fn extend_back(&mut self, topic: &str, p: i32, from: i64) {
        if let Some(s) = self.spans.get_mut(topic).and_then(|ps| ps.get_mut(&p)).and_then(|v| v.first_mut()) {
            s.first = s.first.min(from);
        }
    }

    pub fn list(&self) -> Vec<TopicSpan> {
        self.spans
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().flat_map(move |(p, spans)| {
                    spans.iter().map(move |span| TopicSpan { topic: topic.clone(), partition: *p, span: *span })
                })
            })
            .collect()
    }

    pub fn from_list(list: &[TopicSpan]) -> Self {
        let mut r = Ranges::default();
        for s in list {
            r.add_span(&s.topic, s.partition, s.span);
        }
        r
    }
}

impl Serialize for Ranges {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.list().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ranges {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Ranges::from_list(&Vec::<TopicSpan>::deserialize(d)?))
    }
}

#[derive(Debug, Default)]
struct RunReports {
    delivered: u64,
    failed: u64,
    first_error: Option<String>,
    produced: Ranges,
    /// Records of the open transaction: produced once it commits, never if it aborts.
    open: Option<(u64, Ranges)>,
}

/// Every delivery report of a run: how many records were delivered or
/// failed, and the offsets the delivered ones landed at.
#[derive(Debug, Default)]
pub struct Deliveries {
    reports: Mutex<RunReports>,
}

impl Deliveries {
    fn lock(&self) -> MutexGuard<'_, RunReports> {
        self.reports.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// Record one report: where a delivered record landed, or why it failed.
    pub fn record(&self, result: Result<(&str, i32, i64), String>) {
        let mut r = self.lock();
        match result {
            Ok((topic, partition, offset)) => match &mut r.open {
                Some((delivered, open)) => {
                    *delivered += 1;
                    open.add(topic, partition, offset);
                }
                None => {
                    r.delivered += 1;
                    r.produced.add(topic, partition, offset);
                }
            },
            Err(why) => {
                r.failed += 1;
                r.first_error.get_or_insert(why);
            }
        }
    }
    /// The records delivered from now on belong to a transaction.
    pub fn begin_transaction(&self) {
        self.lock().open = Some(Default::default());
    }
    /// The transaction ended: its records count as produced if it `committed`.
    pub fn end_transaction(&self, committed: bool) {
        let mut r = self.lock();
        if let Some((delivered, open)) = r.open.take()
            && committed
        {
            r.delivered += delivered;
            r.produced.merge(&open);
        }
    }
    pub fn delivered(&self) -> u64 {
        self.lock().delivered
    }
    pub fn failed(&self) -> u64 {
        self.lock().failed
    }
    /// The first delivery error seen, for the failure message.
    pub fn first_error(&self) -> Option<String> {
        self.lock().first_error.clone()
    }
    /// Where the delivered records landed.
    pub fn produced(&self) -> Ranges {
        self.lock().produced.clone()
    }
}

/// How long Kafka may take to acknowledge a batch's records.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(120);

/// A consumed batch whose outputs are on their way.
pub struct Pending {
    pub offsets: TopicPartitionList,
    pub ack: Arc<BatchAck>,
    /// Records the batch took in, and where they were.
    pub received: u64,
    pub consumed: Ranges,
    pub took: Duration,
}

/// Batches awaiting their acknowledgements, oldest first; each is committed,
/// in order, once its outputs are all acknowledged (at least once).
#[derive(Default)]
pub struct Committer {
    pending: VecDeque<Pending>,
}

impl Committer {
    pub fn push(&mut self, p: Pending) {
        self.pending.push_back(p);
    }

    /// Commit the oldest batches whose outputs all succeeded (`commit` writes
    /// their offsets), waiting until at most `keep` remain uncommitted. Each
    /// committed batch goes to `settled` with its counts. A failed output
    /// stops here, its batch and every later one uncommitted.
    pub async fn commit_ready(
        &mut self,
        keep: usize,
        mut commit: impl FnMut(&TopicPartitionList) -> Result<()>,
        mut settled: impl FnMut(&Pending, Counts),
    ) -> Result<()> {
        let mut waiting_since = Instant::now();
        while let Some(front) = self.pending.front() {
            match front.ack.status() {
                Status::Failed(why) => anyhow::bail!("{why}; the batch's offsets were not committed"),
                Status::Complete(counts) => {
                    commit(&front.offsets)?;
                    settled(front, counts);
                    self.pending.pop_front();
                }
                Status::Waiting { .. } if self.pending.len() <= keep => break,
                Status::Waiting { holding } => {
                    // A store write keeps its own deadline (--retry-for); the
                    // timeout here is for Kafka's acknowledgements.
                    if holding {
                        waiting_since = Instant::now();
                    } else if waiting_since.elapsed() > ACK_TIMEOUT {
                        anyhow::bail!(
                            "Kafka did not acknowledge a batch's records within {ACK_TIMEOUT:?}; offsets not committed"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        Ok(())
    }
}

/// For the fault tests only: `RTDS_FAULT_PAUSE_BEFORE_COMMIT=2s` pauses every
/// commit after its offsets are sent, so a test can kill the stage mid-commit.
static PAUSE_BEFORE_COMMIT: std::sync::LazyLock<Option<Duration>> = std::sync::LazyLock::new(|| {
    std::env::var("RTDS_FAULT_PAUSE_BEFORE_COMMIT").ok().and_then(|v| humantime::parse_duration(&v).ok())
});

/// How often `--exactly-once` commits its transaction: once it has been open
/// for `every`, or has taken `records` inputs, whichever comes first; and at
/// once when the input has nothing more waiting (it costs latency nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    pub every: Duration,
    pub records: u64,
}

/// `--exactly-once`: the delivery rule inside Kafka transactions. A
/// transaction is begun with the first batch after a commit and carries the
/// outputs of every batch sent while it is open; `commit` makes them and the
/// batches' consumed offsets visible together once every report is in and all
/// succeeded. Otherwise it aborts, and nothing of those batches is: the
/// consumer group gives their records out again from the last commit.
pub struct Transaction<'a> {
    /// Where the run's records landed: those of a transaction count once it commits.
    deliveries: &'a Deliveries,
    /// When the open transaction began (`None`: none is open).
    began: Option<Instant>,
    batches: Vec<Pending>,
    records: u64,
}

fn txn<T>(what: &str, r: rdkafka::error::KafkaResult<T>) -> Result<T> {
    r.with_context(|| format!("Kafka transaction: {what}"))
}

impl<'a> Transaction<'a> {
    pub fn new(deliveries: &'a Deliveries) -> Self {
        Self { deliveries, began: None, batches: Vec::new(), records: 0 }
    }

    /// Begin a transaction unless one is open, before a batch's outputs are sent.
    pub fn begin<C: ProducerContext, P: Producer<C>>(&mut self, producer: &P) -> Result<()> {
        if self.began.is_none() {
            txn("begin", producer.begin_transaction())?;
            self.deliveries.begin_transaction();
            self.began = Some(Instant::now());
        }
        Ok(())
    }

    /// A batch whose outputs were sent in the open transaction.
    pub fn add(&mut self, batch: Pending) {
        self.records += batch.received;
        self.batches.push(batch);
    }

    /// Whether to commit now: per `cadence`, or at once when `caught_up`.
    pub fn due(&self, cadence: &Cadence, caught_up: bool) -> bool {
        self.began.is_some_and(|t| caught_up || t.elapsed() >= cadence.every || self.records >= cadence.records)
    }

    /// Commit the open transaction (if any) with the batches' offsets (when
    /// the run reads as consumer `group`); each batch goes to `settled` with
    /// its counts. On any failure the transaction is aborted.
    pub fn commit<C: ProducerContext, P: Producer<C>>(
        &mut self,
        producer: &P,
        group: Option<&ConsumerGroupMetadata>,
        mut settled: impl FnMut(&Pending, Counts),
    ) -> Result<()> {
        if self.began.is_none() {
            return Ok(());
        }
        let attempt = || {
            let start = Instant::now();
            let counts = self.outcome()?;
            let acked = start.elapsed();
            if let Some(group) = group {
                let offsets = latest_offsets(self.batches.iter().map(|b| &b.offsets))?;
                txn("send offsets", producer.send_offsets_to_transaction(&offsets, group, ACK_TIMEOUT))?;
            }
            let offsets = start.elapsed() - acked;
            if let Some(pause) = *PAUSE_BEFORE_COMMIT {
                tracing::warn!(?pause, "fault injection: pausing between the offsets and the commit");
                std::thread::sleep(pause);
            }
            txn("commit", producer.commit_transaction(ACK_TIMEOUT))?;
            // Where a commit's time goes (RTDS_LOG=rtds=debug): the acks, the offsets, the commit.
            tracing::debug!(
                batches = self.batches.len(),
                records = self.records,
                open_ms = self.began.map_or(0, |t| t.elapsed().as_millis()),
                acks_ms = acked.as_millis(),
                offsets_ms = offsets.as_millis(),
                commit_ms = (start.elapsed() - acked - offsets).as_millis(),
                "transaction committed"
            );
            Ok(counts)
        };
        let result: Result<Vec<Counts>> = tokio::task::block_in_place(attempt);
        match result {
            Ok(counts) => {
                self.deliveries.end_transaction(true);
                for (b, c) in self.batches.iter().zip(counts) {
                    settled(b, c);
                }
                self.clear();
                Ok(())
            }
            Err(e) => {
                let batches = self.batches.len();
                self.abort(producer);
                Err(e.context(format!(
                    "the transaction was rolled back; nothing of its {batches} batch(es) was committed"
                )))
            }
        }
    }

    /// What each batch gave, once every output is acknowledged (not
    /// `flush`, which waits in steps of 100 ms); the first failure otherwise.
    fn outcome(&self) -> Result<Vec<Counts>> {
        let since = Instant::now();
        let mut counts = Vec::with_capacity(self.batches.len());
        for b in &self.batches {
            loop {
                match b.ack.status() {
                    Status::Complete(c) => break counts.push(c),
                    Status::Failed(why) => anyhow::bail!(why),
                    Status::Waiting { holding } if !holding && since.elapsed() > ACK_TIMEOUT => {
                        anyhow::bail!("Kafka did not acknowledge a batch's records within {ACK_TIMEOUT:?}")
                    }
                    Status::Waiting { .. } => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        }
        Ok(counts)
    }

    /// Abort the open transaction (if any): none of its outputs or offsets
    /// become visible. The caller re-reads its batches (a rebalance does that);
    /// the records they took in are returned, to be counted again then.
    /// Work still making a batch's outputs is waited for first, so that none
    /// of them is sent into the next transaction, and their reports for a
    /// while, so that none is counted as produced by the run.
    pub fn abort<C: ProducerContext, P: Producer<C>>(&mut self, producer: &P) -> u64 {
        let records = self.records;
        let since = Instant::now();
        for b in &self.batches {
            loop {
                match b.ack.status() {
                    Status::Waiting { holding: true } => {}
                    Status::Waiting { holding: false } if since.elapsed() < ABORT_REPORTS_WAIT => {}
                    _ => break,
                }
                tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(1)));
            }
        }
        self.deliveries.end_transaction(false);
        if self.began.is_some()
            && let Err(e) = tokio::task::block_in_place(|| producer.abort_transaction(ACK_TIMEOUT))
        {
            tracing::warn!("aborting the Kafka transaction: {e}");
        }
        self.clear();
        records
    }

    fn clear(&mut self) {
        self.began = None;
        self.batches.clear();
        self.records = 0;
    }
}

/// How long an abort waits for the reports of records already sent.
const ABORT_REPORTS_WAIT: Duration = Duration::from_secs(10);

/// Per topic partition, the highest of the offsets of `lists`: what a
/// transaction over several batches commits.
fn latest_offsets<'a>(lists: impl Iterator<Item = &'a TopicPartitionList>) -> Result<TopicPartitionList> {
    let mut latest: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for list in lists {
        for e in list.elements() {
            if let rdkafka::Offset::Offset(o) = e.offset() {
                let at = latest.entry((e.topic().to_owned(), e.partition())).or_insert(o);
                *at = (*at).max(o);
            }
        }
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in latest {
        tpl.add_partition_offset(&topic, partition, rdkafka::Offset::Offset(offset))
            .context("building a transaction's offsets")?;
    }
    Ok(tpl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_commits_the_highest_offset_of_each_partition() {
        let list = |entries: &[(&str, i32, i64)]| {
            let mut tpl = TopicPartitionList::new();
            for (t, p, o) in entries {
                tpl.add_partition_offset(t, *p, rdkafka::Offset::Offset(*o)).unwrap();
            }
            tpl
        };
        let batches = [list(&[("raw", 0, 10), ("raw", 1, 5)]), list(&[("raw", 0, 20)]), list(&[("raw", 1, 7)])];
        let latest = latest_offsets(batches.iter()).unwrap();
        let got: Vec<(String, i32, rdkafka::Offset)> =
            latest.elements().iter().map(|e| (e.topic().to_owned(), e.partition(), e.offset())).collect();
        assert_eq!(
            got,
            [("raw".into(), 0, rdkafka::Offset::Offset(20)), ("raw".into(), 1, rdkafka::Offset::Offset(7))]
        );
    }

    #[test]
    fn records_of_a_transaction_are_produced_only_once_it_commits() {
        let d = Deliveries::default();
        d.record(Ok(("out", 0, 0)));
        d.begin_transaction();
        d.record(Ok(("out", 0, 1)));
        d.record(Ok(("out", 0, 2)));
        d.end_transaction(false);
        d.begin_transaction();
        d.record(Ok(("out", 0, 4)));
        d.end_transaction(true);
        assert_eq!(d.delivered(), 2);
        assert_eq!(d.produced().of("out")[&0], Span::new(0, 4, 2));
    }

    #[test]
    fn a_transaction_is_due_by_time_by_records_or_when_caught_up() {
        let d = Deliveries::default();
        let mut t = Transaction::new(&d);
        let cadence = Cadence { every: Duration::from_secs(3600), records: 100 };
        assert!(!t.due(&cadence, true), "nothing open, nothing due");
        t.began = Some(Instant::now());
        assert!(!t.due(&cadence, false));
        assert!(t.due(&cadence, true), "caught up: commit at once");
        t.records = 100;
        assert!(t.due(&cadence, false), "records reached");
        t.records = 0;
        assert!(t.due(&Cadence { every: Duration::ZERO, records: 100 }, false), "time reached");
    }

    #[test]
    fn a_batch_waits_for_its_holds_and_counts_what_they_report() {
        let ack = Arc::new(BatchAck::default());
        assert_eq!(ack.status(), Status::Complete(Counts::default()), "nothing sent, nothing held");
        let hold = ack.hold();
        ack.sending();
        assert_eq!(ack.status(), Status::Waiting { holding: true });
        hold.release(Counts { out: 7, dlq: 2, filtered: 1 });
        assert_eq!(ack.status(), Status::Waiting { holding: false }, "a record's report is still due");
        ack.reported(Ok(()));
        assert_eq!(ack.status(), Status::Complete(Counts { out: 7, dlq: 2, filtered: 1 }));
    }

    #[test]
    fn a_failed_report_or_hold_fails_the_batch_with_why() {
        let ack = Arc::new(BatchAck::default());
        ack.sending();
        ack.sending();
        ack.reported(Ok(()));
        // The last report fails: one reading sees both the report and the failure.
        ack.reported(Err("Broker: Message size too large".into()));
        assert_eq!(ack.status(), Status::Failed("Broker: Message size too large".into()));
        let held = Arc::new(BatchAck::default());
        held.hold().fail("store down".into());
        assert_eq!(held.status(), Status::Failed("store down".into()));
        let dropped = Arc::new(BatchAck::default());
        drop(dropped.hold());
        assert!(matches!(dropped.status(), Status::Failed(why) if why.contains("abandoned")));
    }

    #[test]
    fn reports_racing_the_reading_never_let_a_failed_batch_commit() {
        // Reports arrive on other threads while the batch is read: whatever a
        // reading sees, it is never Complete once a failure is in.
        for _ in 0..200 {
            let ack = Arc::new(BatchAck::default());
            for _ in 0..64 {
                ack.sending();
            }
            let reporter = {
                let ack = ack.clone();
                std::thread::spawn(move || {
                    for i in 0..64 {
                        ack.reported(if i == 63 { Err("failed".into()) } else { Ok(()) });
                    }
                })
            };
            loop {
                match ack.status() {
                    Status::Complete(_) => panic!("a batch with a failed record read as complete"),
                    Status::Failed(_) => break,
                    Status::Waiting { .. } => std::hint::spin_loop(),
                }
            }
            reporter.join().unwrap();
        }
    }

    #[tokio::test]
    async fn only_complete_batches_commit_in_order_and_a_failure_stops_the_rest() {
        let mut committer = Committer::default();
        let acks: Vec<Arc<BatchAck>> = (0..3).map(|_| Arc::new(BatchAck::default())).collect();
        for (i, ack) in acks.iter().enumerate() {
            let mut offsets = TopicPartitionList::new();
            offsets.add_partition_offset("t", 0, rdkafka::Offset::Offset(i as i64 + 1)).unwrap();
            ack.sending();
            committer.push(Pending {
                offsets,
                ack: ack.clone(),
                received: 1,
                consumed: Ranges::default(),
                took: Duration::ZERO,
            });
        }
        acks[0].count(Counts { out: 1, ..Counts::default() });
        acks[0].reported(Ok(()));
        acks[1].reported(Err("too large".into()));
        acks[2].reported(Ok(()));
        let mut committed = Vec::new();
        let mut counted = Counts::default();
        let r = committer
            .commit_ready(
                0,
                |o| {
                    committed.push(o.elements()[0].offset());
                    Ok(())
                },
                |_, c| counted += c,
            )
            .await;
        assert!(r.unwrap_err().to_string().contains("too large"));
        assert_eq!(committed, [rdkafka::Offset::Offset(1)], "only the batch before the failed one");
        assert_eq!(counted, Counts { out: 1, dlq: 0, filtered: 0 });
    }

    #[test]
    fn spans_of_replicas_keep_a_lost_one_as_a_hole_and_mark_what_was_read_twice() {
        let span = |first, last| Span::new(first, last, (last - first + 1) as u64);
        let mut r = Ranges::default();
        r.add_span("t", 0, span(0, 99));
        r.add_span("t", 0, span(200, 299));
        assert_eq!(r.spans("t")[&0], [span(0, 99), span(200, 299)], "the middle replica's summary is missing");
        assert_eq!(r.of("t")[&0], Span::new(0, 299, 200), "the hull counts only what was read");
        assert!(!r.contains("t", 0, 150) && r.contains("t", 0, 250));
        r.add_span("t", 0, span(100, 199));
        assert_eq!(r.spans("t")[&0], [span(0, 299)], "spans that meet join");
        assert!(!r.reread("t"));
        r.add_span("t", 0, span(250, 260));
        assert!(r.reread("t"), "offsets 250..=260 counted twice");
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""reread":true"#), "{json}");
        assert_eq!(serde_json::from_str::<Ranges>(&json).unwrap(), r);
        let mut back = Ranges::default();
        back.add_span("t", 1, span(5, 9));
        back.extend_back("t", 1, 3);
        assert_eq!(back.spans("t")[&1], [Span::new(3, 9, 5)], "a reader's span starts where it went on from");
    }

    #[test]
    fn ranges_widen_and_count() {
        let mut r = Ranges::default();
        for o in [5, 3, 9] {
            r.add("t", 1, o);
        }
        r.add("u", 0, 0);
        assert_eq!(r.of("t")[&1], Span::new(3, 9, 3));
        assert_eq!(r.count("u"), 1);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"[{"topic":"t","partition":1,"first":3,"last":9,"count":3},{"topic":"u","partition":0,"first":0,"last":0,"count":1}]"#
        );
        assert_eq!(serde_json::from_str::<Ranges>(&json).unwrap(), r);
    }
}
