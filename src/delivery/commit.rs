//! In-order commit (at least once): each batch's offsets once every output of it is acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::TopicPartitionList;

use super::{BatchAck, Counts, Ranges, Status};

/// How long Kafka may take to acknowledge a batch's records.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a wait for a batch's reports lasts before the deadlines are looked at again.
pub(super) const REREAD: Duration = Duration::from_secs(1);

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
                    // Woken once the batch settles, not on a timer.
                    let ack = front.ack.clone();
                    tokio::task::block_in_place(|| ack.wait(REREAD));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
