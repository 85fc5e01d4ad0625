//! Writing a batch as one Delta commit that says, per Kafka partition, the
//! last offset it holds (an application transaction, `txn`): the rows of a
//! batch read again are found below those versions and left out, so a replay
//! writes nothing twice. The versions are read from the table's log once per
//! partition and kept; any commit this writer did not make, seen between its
//! own, drops them (another writer may have taken the partition), and a commit
//! that fails is retried by the load against the log as it then is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::datatypes::SchemaRef;
use deltalake_core::DeltaTable;
use deltalake_core::kernel::Transaction;
use deltalake_core::kernel::transaction::CommitProperties;
use deltalake_core::writer::{DeltaWriter as _, RecordBatchWriter};

use crate::row::UserRow;
use crate::sinks::files::{parquet_properties, text_batch, text_schema};
use crate::sinks::{ReadAt, Rejected, WriteError, Writer};

pub struct DeltaWriter {
    dir: PathBuf,
    table: DeltaTable,
    schema: SchemaRef,
    /// By app id: the last offset the table holds of its partition (`None`: none).
    versions: HashMap<String, Option<i64>>,
}

/// The application transaction id of `stream`'s `partition`.
pub fn app_id(stream: &str, partition: i32) -> String {
    format!("rtds:{stream}:{partition}")
}

impl DeltaWriter {
    pub async fn open(dir: &Path, partition_by: &[String]) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the output directory {}", dir.display()))?;
        let table = super::table::open_or_create(dir, partition_by).await?;
        Ok(Self { dir: dir.to_owned(), table, schema: text_schema(), versions: HashMap::new() })
    }

    async fn write(&mut self, rows: &[UserRow], at: ReadAt<'_>) -> Result<Rejected, WriteError> {
        match self.commit(rows, at).await {
            Ok(()) => Ok(Vec::new()),
            Err(e) => {
                // The log may have moved (another writer, or this commit landed
                // and only what followed it failed): read it again on the retry.
                self.versions.clear();
                if let Err(reload) = self.table.update_state().await {
                    tracing::warn!("reloading the Delta table's log: {reload:#}");
                }
                Err(WriteError::Transient(e))
            }
        }
    }

    /// Commit the rows the table does not hold yet, with the versions they bring.
    async fn commit(&mut self, rows: &[UserRow], at: ReadAt<'_>) -> Result<()> {
        let mut partitions: Vec<i32> = at.offsets.iter().map(|(p, _)| *p).collect();
        partitions.sort_unstable();
        partitions.dedup();
        let mut held: HashMap<i32, Option<i64>> = HashMap::with_capacity(partitions.len());
        for p in partitions {
            held.insert(p, self.held(at.stream, p).await?);
        }
        let mut last: HashMap<i32, i64> = HashMap::new();
        let mut fresh = Vec::with_capacity(rows.len());
        for (row, &(partition, offset)) in rows.iter().zip(at.offsets) {
            if held[&partition].is_some_and(|v| offset <= v) {
                continue;
            }
            fresh.push(row);
            let end = last.entry(partition).or_insert(offset);
            *end = (*end).max(offset);
        }
        if fresh.is_empty() {
            tracing::debug!(rows = rows.len(), "the Delta table holds every row of the batch already");
            return Ok(());
        }
        let batch = text_batch(&self.schema, &fresh)?;
        let now = chrono::Utc::now().timestamp_millis();
        let txns: Vec<Transaction> =
            last.iter().map(|(p, v)| Transaction::new_with_last_update(app_id(at.stream, *p), *v, Some(now))).collect();
        let before = self.table.version();
        let mut writer = RecordBatchWriter::for_table(&self.table)
            .context("preparing a Delta write")?
            .with_writer_properties(parquet_properties())
            .with_commit_properties(CommitProperties::default().with_application_transactions(txns));
        writer.write(batch).await.context("writing a Delta data file")?;
        let version = writer.flush_and_commit(&mut self.table).await.context("committing to the Delta table")?;
        #[cfg(feature = "fault-injection")]
        crate::delivery::fault::passing("DELTA_COMMIT");
        // Commits of another writer came in between: what is kept of them may be stale.
        if before.map(|b| b + 1) != Some(version) {
            self.versions.clear();
        }
        for (p, v) in last {
            self.versions.insert(app_id(at.stream, p), Some(v));
        }
        Ok(())
    }

    /// The last offset of `stream`'s `partition` the table holds.
    async fn held(&mut self, stream: &str, partition: i32) -> Result<Option<i64>> {
        let id = app_id(stream, partition);
        if let Some(v) = self.versions.get(&id) {
            return Ok(*v);
        }
        let snapshot = self.table.snapshot().context("reading the Delta table's state")?;
        let v = snapshot
            .transaction_version(self.table.log_store().as_ref(), &id)
            .await
            .with_context(|| format!("reading the Delta table's version of {id}"))?;
        self.versions.insert(id, v);
        Ok(v)
    }
}

impl Writer for DeltaWriter {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }
    fn write<'a>(
        &'a mut self,
        rows: &'a [UserRow],
        at: ReadAt<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Rejected, WriteError>> {
        Box::pin(DeltaWriter::write(self, rows, at))
    }
}
