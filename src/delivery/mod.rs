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
//!
//! By job: `ack` (Counts, BatchAck, Status, Hold), `commit` (Committer,
//! Pending: in-order commit), `transaction` (Transaction, Cadence:
//! `--exactly-once`), `ranges` (Span, Ranges, TopicSpan), `deliveries`
//! (Deliveries: a run's delivery reports); `fault` holds the test-only hooks.

mod ack;
mod commit;
mod deliveries;
#[cfg(feature = "fault-injection")]
pub(crate) mod fault;
mod ranges;
mod transaction;

pub use ack::{BatchAck, Counts, Hold, Status};
pub use commit::{ACK_TIMEOUT, Committer, Pending};
pub use deliveries::Deliveries;
pub use ranges::{Ranges, Span, TopicSpan};
pub use transaction::{Cadence, ProducerFailed, Transaction, fenced_by_a_twin};
