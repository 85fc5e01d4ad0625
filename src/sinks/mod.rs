//! The stores `rtds load` writes to, one file each. Each file keeps the same
//! order: its options, opening (create/check the table), then the write of one
//! batch. A write either succeeds for every row it did not reject, or fails as
//! a whole; offsets are committed only after success.

pub mod cassandra;
pub mod parquet;
pub mod postgres;

use crate::load::row::UserRow;

/// Why a batch write failed: `Transient` is retried (store down, timeout),
/// `Fatal` ends the run (a table that cannot take the rows).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0:#}")]
    Transient(anyhow::Error),
    #[error("{0:#}")]
    Fatal(anyhow::Error),
}

/// Rows a store can never take, by index into the batch, with the reason.
pub type Rejected = Vec<(usize, String)>;

pub enum Sink {
    Cassandra(Box<cassandra::CassandraSink>),
    Postgres(postgres::PostgresSink),
    Parquet(parquet::ParquetSink),
}

impl Sink {
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Cassandra(_) => "cassandra",
            Sink::Postgres(_) => "postgres",
            Sink::Parquet(_) => "parquet",
        }
    }

    /// Where the rows go: `keyspace.table`, `schema.table`, or a directory.
    pub fn location(&self) -> String {
        match self {
            Sink::Cassandra(s) => s.table.clone(),
            Sink::Postgres(s) => s.table.clone(),
            Sink::Parquet(s) => s.dir.display().to_string(),
        }
    }

    /// Write `rows` (upsert by id where the store can).
    pub async fn write(&mut self, rows: &[UserRow]) -> Result<Rejected, WriteError> {
        match self {
            Sink::Cassandra(s) => s.write(rows).await,
            Sink::Postgres(s) => s.write(rows).await,
            Sink::Parquet(s) => s.write(rows).await,
        }
    }
}
