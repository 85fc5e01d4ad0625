//! Transactions and their cadence (`--exactly-once`): the delivery rule over several batches at a time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::producer::{Producer, ProducerContext};

#[cfg(feature = "fault-injection")]
use super::fault::pause_before_commit;
use super::{ACK_TIMEOUT, Counts, Deliveries, Pending, Status};

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

    pub fn is_open(&self) -> bool {
        self.began.is_some()
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
            // The offsets go while the outputs' reports come (two round trips
            // to the coordinators, not after them): a failed output aborts
            // them with the rest. The transactional producer retries a
            // coordinator still finishing the transaction before after 20 ms,
            // not librdkafka's 100 (`produce::RETRY_BACKOFF_TXN`).
            let start = Instant::now();
            if let Some(group) = group {
                let offsets = latest_offsets(self.batches.iter().map(|b| &b.offsets))?;
                txn("send offsets", producer.send_offsets_to_transaction(&offsets, group, ACK_TIMEOUT))?;
            }
            let offsets = start.elapsed();
            let counts = self.outcome()?;
            let acked = start.elapsed() - offsets;
            #[cfg(feature = "fault-injection")]
            if let Some(pause) = pause_before_commit() {
                tracing::warn!(?pause, "fault injection: pausing between the offsets and the commit");
                std::thread::sleep(pause);
            }
            txn("commit", producer.commit_transaction(ACK_TIMEOUT))?;
            // Where a commit's time goes (RTDS_LOG=rtds=debug): the offsets, the acks left, the commit.
            tracing::debug!(
                batches = self.batches.len(),
                records = self.records,
                open_ms = self.began.map_or(0, |t| t.elapsed().as_millis()),
                offsets_ms = offsets.as_millis(),
                acks_ms = acked.as_millis(),
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
            Err(e) => Err(self.roll_back(producer, e)),
        }
    }

    /// Abort after `failure`: with a transaction open, the failure says how
    /// much of it was rolled back and how long it had been open (`RolledBack`).
    pub fn roll_back<C: ProducerContext, P: Producer<C>>(
        &mut self,
        producer: &P,
        failure: anyhow::Error,
    ) -> anyhow::Error {
        let (batches, open_for) = (self.batches.len(), self.began.map(|t| t.elapsed()));
        self.abort(producer);
        match open_for {
            Some(open_for) => failure.context(RolledBack { batches, open_for }),
            None => failure,
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
                    Status::Waiting { .. } => {
                        b.ack.wait(super::commit::REREAD);
                    }
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
                tokio::task::block_in_place(|| b.ack.wait(super::commit::REREAD));
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

/// A failed commit's context: how many batches the transaction held and how
/// long it had been open, for `fenced_by_a_twin`.
#[derive(Debug, thiserror::Error)]
#[error("the transaction was rolled back; nothing of its {batches} batch(es) was committed")]
pub struct RolledBack {
    batches: usize,
    open_for: Duration,
}

/// The context of a failed run whose producer failed for good (librdkafka's
/// fatal error, which a fence is): the failure seen first may be a record's
/// report or a worker's, which carry only their message.
#[derive(Debug, thiserror::Error)]
#[error("the Kafka producer failed for good ({0})")]
pub struct ProducerFailed(pub String);

/// Whether `error` is a fence by another live instance of the same
/// transactional id, which the run must leave the work to (starting over would
/// fence it back), rather than the coordinator's abort of a transaction open
/// longer than its `timeout` (a broker, or this process, away meanwhile), after
/// which a new producer may go on. Both reach the producer as a fence (or,
/// once it is fenced, as librdkafka's "fatal" on every later call).
pub fn fenced_by_a_twin(error: &anyhow::Error, timeout: Duration) -> bool {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
    let fenced = error.chain().filter_map(|c| c.downcast_ref::<KafkaError>()).any(|k| {
        matches!(
            k.rdkafka_error_code(),
            Some(Code::Fenced | Code::ProducerFenced | Code::InvalidProducerEpoch | Code::Fatal)
        )
    });
    let timed_out = error.downcast_ref::<RolledBack>().is_some_and(|r| r.open_for >= timeout);
    (fenced || error.downcast_ref::<ProducerFailed>().is_some()) && !timed_out
}

/// How long an abort waits for the reports of records already sent.
const ABORT_REPORTS_WAIT: Duration = Duration::from_secs(10);

/// Per topic partition, the highest of the offsets of `lists`, with the
/// metadata of the last list giving it: what a transaction over several
/// batches commits (an aggregate's metadata moves on while its offset may not).
fn latest_offsets<'a>(lists: impl Iterator<Item = &'a TopicPartitionList>) -> Result<TopicPartitionList> {
    let mut latest: BTreeMap<(String, i32), (i64, String)> = BTreeMap::new();
    for list in lists {
        for e in list.elements() {
            if let rdkafka::Offset::Offset(o) = e.offset() {
                let at = latest.entry((e.topic().to_owned(), e.partition())).or_insert((o, String::new()));
                if o >= at.0 {
                    *at = (o, e.metadata().to_owned());
                }
            }
        }
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), (offset, metadata)) in latest {
        let mut e = tpl.add_partition(&topic, partition);
        e.set_offset(rdkafka::Offset::Offset(offset)).context("building a transaction's offsets")?;
        if !metadata.is_empty() {
            e.set_metadata(metadata);
        }
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
        // The same offset again with newer metadata: the newer metadata goes.
        let newer = list(&[("raw", 0, 20)]);
        newer.find_partition("raw", 0).unwrap().set_metadata("read=25");
        let latest = latest_offsets(batches.iter().chain([&newer])).unwrap();
        assert_eq!(latest.find_partition("raw", 0).unwrap().metadata(), "read=25");
        assert_eq!(latest.find_partition("raw", 1).unwrap().metadata(), "");
    }

    #[test]
    fn a_fence_is_a_twins_unless_the_transaction_outlived_its_timeout() {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        let timeout = Duration::from_secs(10);
        let failed = |code, open_for: u64| {
            anyhow::Error::new(KafkaError::MessageProduction(code))
                .context("Kafka transaction: commit")
                .context(RolledBack { batches: 1, open_for: Duration::from_secs(open_for) })
                .context("transform")
        };
        assert!(fenced_by_a_twin(&failed(RDKafkaErrorCode::Fenced, 2), timeout), "young: another instance");
        assert!(!fenced_by_a_twin(&failed(RDKafkaErrorCode::Fenced, 25), timeout), "timed out: the coordinator's");
        assert!(!fenced_by_a_twin(&failed(RDKafkaErrorCode::MessageTimedOut, 2), timeout), "no fence");
        let at_begin = anyhow::Error::new(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidProducerEpoch))
            .context("Kafka transaction: begin");
        assert!(fenced_by_a_twin(&at_begin, timeout), "fenced with no transaction open: another instance");
        assert!(fenced_by_a_twin(&failed(RDKafkaErrorCode::Fatal, 2), timeout), "fatal since a fence");
        // A record's report said why (a string); the producer's fatal error says it was fenced.
        let reported = |fenced, open_for| {
            let e = anyhow::anyhow!("Kafka did not take a record: InvalidProducerEpoch")
                .context(RolledBack { batches: 5, open_for: Duration::from_secs(open_for) });
            if fenced { e.context(ProducerFailed("fenced".into())) } else { e }
        };
        assert!(fenced_by_a_twin(&reported(true, 1), timeout));
        assert!(!fenced_by_a_twin(&reported(true, 11), timeout));
        assert!(!fenced_by_a_twin(&reported(false, 1), timeout), "a record timed out: go on");
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
}
