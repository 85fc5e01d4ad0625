//! An open table a load writes to, and how a write fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// The longest wait between two tries of a write.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Retries of a store's write: transient failures are retried with backoff
/// for up to `retry_for`, each counted in `retried`.
pub struct Retry<'a> {
    store: &'a str,
    retry_for: Duration,
    retried: &'a AtomicU64,
    start: Instant,
    wait: Duration,
}

impl<'a> Retry<'a> {
    pub fn new(store: &'a str, retry_for: Duration, retried: &'a AtomicU64) -> Self {
        Self { store, retry_for, retried, start: Instant::now(), wait: Duration::from_millis(250) }
    }

    /// A write failed: wait before the next try, or the error that ends the tries.
    pub async fn after(&mut self, failed: WriteError) -> anyhow::Result<()> {
        let (store, retry_for) = (self.store, self.retry_for);
        match failed {
            WriteError::Fatal(e) => Err(e.context(format!("writing to {store}"))),
            WriteError::Transient(e) if self.start.elapsed() + self.wait > retry_for => {
                Err(e.context(format!("writing to {store} (gave up after retrying for {retry_for:?})")))
            }
            WriteError::Transient(e) => {
                tracing::warn!(sink = store, retry_in = ?self.wait, "write failed, will retry: {e:#}");
                self.retried.fetch_add(1, Ordering::AcqRel);
                tokio::time::sleep(self.wait).await;
                self.wait = (self.wait * 2).min(MAX_BACKOFF);
                Ok(())
            }
        }
    }
}
