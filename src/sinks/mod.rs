//! The stores `rtds load` writes to, one file each. Each file keeps the same
//! order: its options, opening (create/check the table), then the write of one
//! batch. A write either succeeds for every row it did not reject, or fails as
//! a whole; offsets are committed only after success.

pub mod cassandra;
pub mod parquet;
pub mod postgres;

use crate::row::UserRow;

/// Why a batch write failed: `Transient` is retried (store down, timeout),
/// `Fatal` ends the run (a table that cannot take the rows).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0:#}")]
    Transient(anyhow::Error),
    #[error("{0:#}")]
    Fatal(anyhow::Error),
}

/// An existing table must have every column of the row contract (and `extra`),
/// each of the type `want` gives; `have` maps its column names to their types.
pub fn check_columns(
    table: &str,
    have: &std::collections::HashMap<String, String>,
    want: impl Fn(crate::row::Kind) -> &'static str,
    extra: &[(&str, &str)],
) -> anyhow::Result<()> {
    let wanted = crate::row::COLUMNS.iter().map(|c| (c.name, want(c.kind))).chain(extra.iter().copied());
    for (c, want) in wanted {
        match have.get(c) {
            None => {
                anyhow::bail!(
                    "table {table} exists but has no column `{c}` ({want}); drop it or choose another --table"
                )
            }
            Some(t) if t != want => anyhow::bail!("column `{c}` of {table} is {t}, expected {want}"),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The column definitions of a new table: each column with its type, the id the primary key.
pub fn column_ddl(kind_type: impl Fn(crate::row::Kind) -> &'static str) -> String {
    let defs: Vec<String> = crate::row::COLUMNS
        .iter()
        .map(|c| match c.kind {
            crate::row::Kind::Id => format!("{} {} PRIMARY KEY", c.name, kind_type(c.kind)),
            _ => format!("{} {}", c.name, kind_type(c.kind)),
        })
        .collect();
    defs.join(", ")
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
