//! Acks and holds: what one consumed batch's outputs have reported so far, read at one instant.

use std::ops::AddAssign;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;

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
    /// Notified when an output reports: waiters wake once a batch settles, not on a timer.
    changed: Condvar,
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

impl AckState {
    /// No longer waiting: every output is in, or one failed.
    fn settled(&self) -> bool {
        self.failed > 0 || (self.holds == 0 && self.reported >= self.sent)
    }

    fn status(&self) -> Status {
        if self.failed > 0 {
            let why = self.error.clone().unwrap_or_else(|| format!("{} output(s) of the batch failed", self.failed));
            Status::Failed(why)
        } else if self.settled() {
            Status::Complete(self.counts)
        } else {
            Status::Waiting { holding: self.holds > 0 }
        }
    }
}

impl BatchAck {
    fn lock(&self) -> MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wake the batch's waiters once it settles, not on every report: a
    /// notification is a futex call even with no one waiting, one a record
    /// at full speed (bench/README.md, "Full speed found again").
    fn changed(&self, s: &AckState) {
        if s.settled() {
            self.changed.notify_all();
        }
    }

    /// The batch's state, read at one instant: a failure that arrives while
    /// the last report is counted cannot slip between two readings.
    pub fn status(&self) -> Status {
        self.lock().status()
    }

    /// The batch's state once it is no longer waiting, or after `timeout`, whichever comes first.
    pub fn wait(&self, timeout: Duration) -> Status {
        let s = self.lock();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| matches!(s.status(), Status::Waiting { .. }))
            .unwrap_or_else(PoisonError::into_inner);
        s.status()
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
        self.changed(&s);
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
        self.ack.changed(&s);
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
        self.ack.changed(&s);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.live {
            self.failing("an output of the batch was abandoned before it was written".into());
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
    fn a_waiter_wakes_when_the_batch_settles() {
        // A waiter not woken waits out its whole timeout (and then reads the
        // settled batch anyway): so the check is that the wait ended well before it.
        const TIMEOUT: Duration = Duration::from_secs(20);
        let waiting = |ack: &Arc<BatchAck>| {
            let ack = ack.clone();
            let waiter = std::thread::spawn(move || {
                let start = std::time::Instant::now();
                (ack.wait(TIMEOUT), start.elapsed())
            });
            // Time for the waiter to be waiting, so that only a wake-up ends its wait.
            std::thread::sleep(Duration::from_millis(100));
            waiter
        };
        let ack = Arc::new(BatchAck::default());
        let (first, last) = (ack.hold(), ack.hold());
        ack.sending();
        let waiter = waiting(&ack);
        first.release(Counts { out: 1, ..Counts::default() });
        ack.reported(Ok(()));
        // Time for a waiter woken above to be waiting again.
        std::thread::sleep(Duration::from_millis(100));
        last.release(Counts { dlq: 1, ..Counts::default() });
        let (status, waited) = waiter.join().unwrap();
        assert_eq!(status, Status::Complete(Counts { out: 1, dlq: 1, filtered: 0 }));
        assert!(waited < TIMEOUT / 2, "the waiter was not woken when the batch completed");
        let failing = Arc::new(BatchAck::default());
        failing.sending();
        failing.sending();
        let waiter = waiting(&failing);
        failing.reported(Err("Broker: Message size too large".into()));
        let (status, waited) = waiter.join().unwrap();
        assert_eq!(status, Status::Failed("Broker: Message size too large".into()));
        assert!(waited < TIMEOUT / 2, "the waiter was not woken when the batch failed");
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
}
