//! The delivery reports a run recorded: how many records landed or failed, and where.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::Ranges;

#[derive(Debug, Default)]
struct RunReports {
    delivered: u64,
    failed: u64,
    first_error: Option<String>,
    produced: Ranges,
    /// Records of the open transaction: produced once it commits, never if it aborts.
    open: Option<(u64, Ranges)>,
    /// A transaction aborted and none began since: a report now is one of its records,
    /// late (a commit waits for every report, an abort does not), so never produced.
    aborted: bool,
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
            Ok((topic, partition, offset)) => match &mut *r {
                RunReports { open: Some((delivered, open)), .. } => {
                    *delivered += 1;
                    open.add(topic, partition, offset);
                }
                RunReports { aborted: true, .. } => {}
                r => {
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
        let mut r = self.lock();
        r.open = Some(Default::default());
        r.aborted = false;
    }
    /// The transaction ended: its records count as produced if it `committed`.
    pub fn end_transaction(&self, committed: bool) {
        let mut r = self.lock();
        // Without an open transaction (a run at least once) there is nothing to end.
        let Some((delivered, open)) = r.open.take() else { return };
        r.aborted = !committed;
        if committed {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Span;

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
    fn a_report_arriving_after_its_transaction_aborted_is_never_produced() {
        let d = Deliveries::default();
        d.begin_transaction();
        d.record(Ok(("out", 0, 0)));
        d.end_transaction(false);
        // The aborted transaction's last record reports late (an abort waits for no report).
        d.record(Ok(("out", 0, 1)));
        assert_eq!((d.delivered(), d.produced().of("out").len()), (0, 0));
        d.begin_transaction();
        d.record(Ok(("out", 0, 3)));
        d.end_transaction(true);
        assert_eq!(d.produced().of("out")[&0], Span::new(3, 3, 1));
        // A run at least once: an abort with no transaction open (a rebalance) drops nothing after it.
        let plain = Deliveries::default();
        plain.end_transaction(false);
        plain.record(Ok(("out", 0, 7)));
        assert_eq!(plain.delivered(), 1);
    }
}
