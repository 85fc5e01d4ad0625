//! An open table a load writes to, and how a write fails.

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

/// Rows a store can never take, by index into the batch, with the reason.
pub type Rejected = Vec<(usize, String)>;

/// Where a write's rows were read: the stream (`<group>/<topic>`, or
/// `range/<topic>` for a run over given offsets) and each row's partition and
/// offset, in the rows' order. A store that appends (Delta) keys its commits
/// by them, so that a batch read again after a crash is not written twice.
#[derive(Debug, Clone, Copy)]
pub struct ReadAt<'a> {
    pub stream: &'a str,
    pub offsets: &'a [(i32, i64)],
}

/// An open table of a sink: what `rtds load` writes each batch to.
pub trait Writer: Send {
    /// Where the rows go (`keyspace.table`, `schema.table`, a directory), for
    /// the summary and `rtds reconcile`.
    fn location(&self) -> String;

    /// Write `rows` (upserted by id where the store can): the rows it refused
    /// for their content, with why; `WriteError::Transient` for a failure a
    /// retry may cure (the store is down), `WriteError::Fatal` otherwise.
    fn write<'a>(&'a mut self, rows: &'a [UserRow], at: ReadAt<'a>) -> BoxFuture<'a, Result<Rejected, WriteError>>;
}
