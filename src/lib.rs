//! rtds: a real-time user-data pipeline. One module per stage (ingest,
//! transform, load), one shared Kafka module, one file per sink; `entry.rs` is
//! the command-line entry point (`main.rs` calls it).

pub mod aggregate;
pub mod avro;
pub mod check;
pub mod cli;
pub mod delivery;
pub mod entry;
pub mod error;
pub mod generate;
pub mod ingest;
pub mod kafka;
pub mod load;
pub mod logging;
pub mod maintain;
pub mod metrics;
pub mod offsets;
pub mod progress;
pub mod query;
pub mod raw;
pub mod reconcile;
pub mod registry;
pub mod replay;
pub mod resident;
pub mod row;
pub mod secrets;
pub mod shutdown;
pub mod sinks;
pub mod slot;
pub mod stage;
pub mod summary;
pub mod transform;
pub mod validate;
