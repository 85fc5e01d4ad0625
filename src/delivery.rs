//! The delivery rule, in one place (after rust-rdkafka's examples/at_least_once.rs):
//! every output of a consumed batch (a record to Kafka, a dead letter, a row
//! written to a store) is made under the batch's `BatchAck`; Kafka's delivery
//! reports and the store's acknowledgements are collected there; the batch's
//! offsets are committed only when every one of them succeeded, decided from
//! one consistent reading of the ack (`BatchAck::status`). With
//! `--exactly-once` the same rule decides inside a Kafka transaction
//! (`commit_in_transaction`).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub first: i64,
    pub last: i64,
    pub count: u64,
}

/// Spans by topic and partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ranges(BTreeMap<(String, i32), Span>);

/// How a range is written in a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpan {
    pub topic: String,
    pub partition: i32,
    #[serde(flatten)]
    pub span: Span,
}

impl Ranges {
    /// Add one offset.
    pub fn add(&mut self, topic: &str, partition: i32, offset: i64) {
        self.add_span(topic, partition, Span { first: offset, last: offset, count: 1 });
    }

    /// Add a span (widening the one already held for that partition).
    pub fn add_span(&mut self, topic: &str, partition: i32, span: Span) {
        match self.0.get_mut(&(topic.to_owned(), partition)) {
            Some(s) => {
                s.first = s.first.min(span.first);
                s.last = s.last.max(span.last);
                s.count += span.count;
            }
            None => {
                self.0.insert((topic.to_owned(), partition), span);
            }
        }
    }

    pub fn merge(&mut self, other: &Ranges) {
        for ((t, p), s) in &other.0 {
            self.add_span(t, *p, *s);
        }
    }

    /// The spans of `topic`, by partition.
    pub fn of(&self, topic: &str) -> BTreeMap<i32, Span> {
        self.0.iter().filter(|((t, _), _)| t == topic).map(|((_, p), s)| (*p, *s)).collect()
    }

    /// Records counted on `topic`.
    pub fn count(&self, topic: &str) -> u64 {
        self.of(topic).values().map(|s| s.count).sum()
    }

    pub fn list(&self) -> Vec<TopicSpan> {
        self.0
            .iter()
            .map(|((topic, partition), span)| TopicSpan { topic: topic.clone(), partition: *partition, span: *span })
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
            Ok((topic, partition, offset)) => {
                r.delivered += 1;
                r.produced.add(topic, partition, offset);
            }
            Err(why) => {
                r.failed += 1;
                r.first_error.get_or_insert(why);
            }
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

/// `--exactly-once`: the same rule inside a Kafka transaction. `send` hands
/// the batch's outputs to the producer under `ack`; once every report is in
/// and all succeeded, the consumed `offsets` (if the run reads as a consumer
/// group) and the outputs commit together; otherwise nothing of the batch does.
pub async fn commit_in_transaction<C: ProducerContext, P: Producer<C>>(
    producer: &P,
    group: Option<ConsumerGroupMetadata>,
    offsets: &TopicPartitionList,
    ack: &BatchAck,
    send: impl Future<Output = Result<()>>,
) -> Result<Counts> {
    let txn = |what: &str, r: rdkafka::error::KafkaResult<()>| r.with_context(|| format!("Kafka transaction: {what}"));
    txn("begin", producer.begin_transaction())?;
    let attempt = async {
        send.await?;
        tokio::task::block_in_place(|| txn("flush", producer.flush(ACK_TIMEOUT)))?;
        let counts = match ack.status() {
            Status::Complete(counts) => counts,
            Status::Failed(why) => anyhow::bail!(why),
            Status::Waiting { .. } => anyhow::bail!("Kafka did not acknowledge the batch's records"),
        };
        tokio::task::block_in_place(|| {
            if let Some(group) = &group {
                txn("send offsets", producer.send_offsets_to_transaction(offsets, group, ACK_TIMEOUT))?;
            }
            txn("commit", producer.commit_transaction(ACK_TIMEOUT))
        })?;
        Ok::<_, anyhow::Error>(counts)
    };
    match attempt.await {
        Ok(c) => Ok(c),
        Err(e) => {
            let _ = tokio::task::block_in_place(|| producer.abort_transaction(ACK_TIMEOUT));
            Err(e.context("the batch was rolled back; nothing of it was committed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ranges_widen_and_count() {
        let mut r = Ranges::default();
        for o in [5, 3, 9] {
            r.add("t", 1, o);
        }
        r.add("u", 0, 0);
        assert_eq!(r.of("t")[&1], Span { first: 3, last: 9, count: 3 });
        assert_eq!(r.count("u"), 1);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"[{"topic":"t","partition":1,"first":3,"last":9,"count":3},{"topic":"u","partition":0,"first":0,"last":0,"count":1}]"#
        );
        assert_eq!(serde_json::from_str::<Ranges>(&json).unwrap(), r);
    }
}
