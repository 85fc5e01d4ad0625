//! The stores `rtds load` writes to, one file each. Each file keeps the same
//! order: its options, opening (create/check the table), then the write of one
//! batch. A write either succeeds for every row it did not reject, or fails as
//! a whole; offsets are committed only after success.

pub mod cassandra;
pub mod parquet;
pub mod postgres;

use futures::future::BoxFuture;

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

/// The ids a store holds of those asked for, each with the ingest stamp of
/// its version (milliseconds; `None` when it has none), for `rtds reconcile`.
pub type Present = std::collections::HashMap<uuid::Uuid, Option<i64>>;

/// Rows a store can never take, by index into the batch, with the reason.
pub type Rejected = Vec<(usize, String)>;

/// What every sink does for `rtds load`.
pub trait Store: Send {
    /// Where the rows go (`keyspace.table`, `schema.table`, a directory), for
    /// the summary and `rtds reconcile`.
    fn location(&self) -> String;

    /// Write `rows` (upserted by id where the store can): the rows it refused
    /// for their content, with why; `WriteError::Transient` for a failure a
    /// retry may cure (the store is down), `WriteError::Fatal` otherwise.
    fn write<'a>(&'a mut self, rows: &'a [UserRow]) -> BoxFuture<'a, Result<Rejected, WriteError>>;
}

/// The sinks, each in a file of its own. Adding one: its file (options,
/// `open`, `Store`, a read-back for reconcile), a variant here, its options in
/// `SinkOpts`, and its line in `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Cassandra,
    Postgres,
    Parquet,
}

impl SinkKind {
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Cassandra => "cassandra",
            SinkKind::Postgres => "postgres",
            SinkKind::Parquet => "parquet",
        }
    }
}

/// Every sink's own options, flattened into `rtds load`.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkOpts {
    #[command(flatten)]
    pub cassandra: cassandra::CassandraOpts,
    #[command(flatten)]
    pub postgres: postgres::PostgresOpts,
    #[command(flatten)]
    pub parquet: parquet::ParquetOpts,
}

/// An open sink: its kind and its store.
pub struct Sink {
    pub kind: SinkKind,
    store: Box<dyn Store>,
}

/// Open the sink of `kind` for `table` (created if absent, checked against the row contract if not).
pub async fn open(kind: SinkKind, opts: &SinkOpts, table: &str) -> anyhow::Result<Sink> {
    let store: Box<dyn Store> = match kind {
        SinkKind::Cassandra => Box::new(cassandra::CassandraSink::open(&opts.cassandra, table).await?),
        SinkKind::Postgres => Box::new(postgres::PostgresSink::open(&opts.postgres, table).await?),
        SinkKind::Parquet => Box::new(parquet::ParquetSink::open(&opts.parquet, table)?),
    };
    Ok(Sink { kind, store })
}

impl Sink {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Write `rows` (upsert by id where the store can).
    pub async fn write(&mut self, rows: &[UserRow]) -> Result<Rejected, WriteError> {
        self.store.write(rows).await
    }
}
