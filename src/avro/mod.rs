//! Avro on the topics that carry records, in the Confluent wire format
//! (`crate::registry::wire`) so Kafka Connect, ksqlDB, Flink and Confluent's
//! clients read them: the format flag, the raw users' schema, and the writer
//! that turns Arrow batches into framed records.

mod reader;
mod writer;

pub use reader::{Read, Reader, input_order};
pub use writer::Writer;

/// How a stage writes the records it produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON text, one object a record.
    #[default]
    Json,
    /// Avro binary framed with its schema's registry id (needs RTDS_SCHEMA_REGISTRY_URL).
    Avro,
}

/// The raw users' schema, schemas/users_raw.avsc: what `rtds ingest --format
/// avro` registers and writes (the shape `raw::decode::raw_schema` reads).
pub const USERS_RAW: &str = include_str!("../../schemas/users_raw.avsc");

/// The compatibility rtds asks of its subjects: a reader of a new version
/// reads the records of the old ones.
pub const COMPATIBILITY: &str = "BACKWARD";

/// The registry subject of a topic's values (the Confluent default, TopicNameStrategy).
pub fn subject(topic: &str) -> String {
    format!("{topic}-value")
}
