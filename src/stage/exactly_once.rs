//! `--exactly-once` for a stage that consumes and produces (transform,
//! aggregate): its options, the transactional id and how long a transaction
//! may stay open.

use std::time::Duration;

use clap::Args;

use super::Commit;
use crate::delivery::Cadence;
use crate::kafka::{self, Reading};
use crate::validate;

/// How long the one transaction of a run over explicit ranges may stay open:
/// the run must end within it (Kafka's default `transaction.max.timeout.ms`,
/// the longest a broker allows unless told otherwise).
const WHOLE_RUN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// `--transaction-timeout`'s default; the bench's exactly-once floor runs at it too.
pub const TRANSACTION_TIMEOUT: &str = "10s";

#[derive(Debug, Clone, Args)]
pub struct ExactlyOnceOpts {
    /// Consume-process-produce in Kafka transactions (exactly once between topics).
    #[arg(long, env = "RTDS_EXACTLY_ONCE")]
    pub exactly_once: bool,
    /// With --exactly-once: commit a transaction once it has been open this long (it also commits
    /// whenever the input has nothing more waiting, and at --transaction-records).
    #[arg(long, env = "RTDS_TRANSACTION_EVERY", default_value = "100ms", value_parser = validate::parse_duration)]
    pub transaction_every: Duration,
    /// With --exactly-once (a --follow or group run): how long a transaction may stay open. A replica
    /// killed mid-transaction and not restarted holds read_committed readers back this long and up to
    /// 10 s more (a restart with the same transactional id ends it at once); an outage of Kafka
    /// longer than it aborts the transaction and stops the run, uncommitted (bench/README.md,
    /// "Bounded stalls").
    #[arg(long, env = "RTDS_TRANSACTION_TIMEOUT", default_value = TRANSACTION_TIMEOUT,
          value_parser = validate::parse_duration)]
    pub transaction_timeout: Duration,
    /// With --exactly-once: commit a transaction once it has taken this many records.
    #[arg(long, env = "RTDS_TRANSACTION_RECORDS", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub transaction_records: u64,
}

/// The transactions of an `--exactly-once` run.
pub struct Transactions {
    pub id: String,
    /// How long one may stay open.
    pub timeout: Duration,
    /// How often one commits; `None`: one for the whole run, committed at its end.
    pub cadence: Option<Cadence>,
}

impl ExactlyOnceOpts {
    /// The run's transactions (`None` without `--exactly-once`), for `stage`
    /// reading `topic` as `reading` says. A run over explicit ranges (a DAG
    /// task) writes them in one transaction: a retry with the same id fences
    /// its predecessor, which aborts everything the predecessor wrote, and
    /// writes it all once. Committed as it went, the predecessor's committed
    /// part would be written a second time.
    pub fn plan(&self, stage: &str, reading: &Reading, topic: &str) -> Option<Transactions> {
        if !self.exactly_once {
            return None;
        }
        let whole_run = matches!(reading, Reading::Ranges(_));
        Some(Transactions {
            id: transactional_id(stage, std::env::var("RTDS_TRANSACTIONAL_ID").ok(), reading, topic),
            timeout: if whole_run { WHOLE_RUN_TRANSACTION_TIMEOUT } else { self.transaction_timeout },
            cadence: (!whole_run)
                .then_some(Cadence { every: self.transaction_every, records: self.transaction_records }),
        })
    }
}

impl Transactions {
    pub fn kafka(&self) -> kafka::Transactional<'_> {
        kafka::Transactional { id: &self.id, timeout: self.timeout }
    }

    pub fn commit(&self) -> Commit {
        Commit::InTransaction(self.cadence)
    }
}

/// The transactional id of `--exactly-once`. Given (RTDS_TRANSACTIONAL_ID),
/// with `{hostname}` replaced by this host's name: each container of a
/// replicated service then has its own, the same across its restarts (a
/// restart fences what its predecessor left open). Otherwise derived from
/// the stage and what the run reads: the group and topic; or, for explicit
/// offset ranges (a DAG run), the ranges themselves, so that a retry of the
/// same run fences its predecessor and two different runs never fence each other.
fn transactional_id(stage: &str, given: Option<String>, reading: &Reading, topic: &str) -> String {
    if let Some(id) = given {
        return super::with_hostname(&id);
    }
    match reading {
        Reading::Ranges(spans) => format!("rtds-{stage}-{topic}-{}", kafka::range_key(topic, spans)),
        _ => format!("rtds-{stage}-{}-{topic}", reading.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transactional_id_is_per_host_per_stage_per_group_or_per_range() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let id = |given: Option<&str>, stage, reading: &Reading| {
            transactional_id(stage, given.map(String::from), reading, "raw")
        };
        let group = Reading::Follow { group: "g".into(), instance: None };
        assert_eq!(id(Some("t-{hostname}"), "transform", &group), format!("t-{}", host.trim()));
        assert_eq!(id(None, "transform", &group), "rtds-transform-g-raw");
        assert_eq!(id(None, "aggregate", &group), "rtds-aggregate-g-raw");
        let range = |last| Reading::Ranges([(0, crate::delivery::Span::new(0, last, last as u64 + 1))].into());
        let (a, b) = (id(None, "transform", &range(9)), id(None, "transform", &range(19)));
        assert_eq!(a, id(None, "transform", &range(9)), "a retry of the same range: the same id");
        assert_ne!(a, b, "another range: another id");
        assert!(a.starts_with("rtds-transform-raw-"), "{a}");
    }

    #[test]
    fn the_transaction_timeout_given_no_flag_is_the_one_the_floor_reads() {
        #[derive(clap::Parser)]
        struct Stage {
            #[command(flatten)]
            opts: ExactlyOnceOpts,
        }
        let parsed = <Stage as clap::Parser>::try_parse_from(["rtds"]).unwrap();
        assert_eq!(Ok(parsed.opts.transaction_timeout), validate::parse_duration(TRANSACTION_TIMEOUT));
        assert_eq!(parsed.opts.transaction_timeout, Duration::from_secs(10));
    }
}
