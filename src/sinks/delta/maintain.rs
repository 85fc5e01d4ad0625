//! Keeping a streaming Delta table small in files: compaction rewrites the
//! data files below a target size into files of about that size, in one
//! commit that removes the small ones without changing the data
//! (`dataChange: false`, operation OPTIMIZE: readers of any version see the
//! same rows); vacuum then deletes the files no version within the retention
//! still reads. Done by hand over the writer and the commit builder, not
//! delta-rs's `optimize`, which needs its DataFusion feature.

use std::path::Path;

use anyhow::{Context, Result};
use deltalake_core::kernel::Action;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::protocol::DeltaOperation;
use deltalake_core::writer::{DeltaWriter as _, RecordBatchWriter};

use super::read::{DataFile, read_data_files};
use super::table::{TableAt, load};
use crate::sinks::files::parquet_properties;

/// What compaction did: data files before and after, and the version it made.
#[derive(Debug, Default, serde::Serialize)]
pub struct Compacted {
    pub files_before: usize,
    pub files_after: usize,
    pub rows: usize,
    pub version: Option<u64>,
}

/// Rewrite the data files of the table at `dir` smaller than `target` bytes
/// into files of about `target` bytes, in one commit; nothing when fewer than
/// two are that small.
pub async fn compact(dir: &Path, target: u64) -> Result<Compacted> {
    let mut table = load(dir, TableAt::Latest).await?;
    let snapshot = table.snapshot().context("reading the Delta table's state")?;
    let all: Vec<_> = snapshot.log_data().iter().collect();
    let small: Vec<_> = all.iter().filter(|f| f.size() < target as i64).collect();
    let mut done = Compacted { files_before: all.len(), files_after: all.len(), ..Compacted::default() };
    if small.len() < 2 {
        return Ok(done);
    }
    // Read with their partition values: the writer files the rows by partition again.
    let files = small.iter().map(|f| DataFile::of(&table, f)).collect::<Result<Vec<_>>>()?;
    let schema = snapshot.snapshot().arrow_schema();
    let batches = tokio::task::spawn_blocking(move || read_data_files(&files, &schema))
        .await
        .context("reading the small files")??;
    let mut writer = RecordBatchWriter::for_table(&table)
        .context("preparing the compacted files")?
        .with_writer_properties(parquet_properties())
        .with_target_file_size(target);
    for batch in batches {
        done.rows += batch.num_rows();
        writer.write(batch).await.context("writing a compacted file")?;
    }
    let mut actions: Vec<Action> = Vec::new();
    let adds = writer.flush().await.context("finishing the compacted files")?;
    let added = adds.len();
    actions.extend(adds.into_iter().map(|mut add| {
        add.data_change = false;
        Action::Add(add)
    }));
    actions.extend(small.iter().map(|f| Action::Remove(f.remove_action(false))));
    let operation = DeltaOperation::Optimize { predicate: None, target_size: target as i64 };
    let finalized = CommitBuilder::from(CommitProperties::default())
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .context("committing the compaction")?;
    done.version = Some(finalized.version() as u64);
    done.files_after = all.len() - small.len() + added;
    table.state = Some(finalized.snapshot());
    Ok(done)
}

/// Delete the files of the table at `dir` that no version younger than
/// `retention` reads; how many.
pub async fn vacuum(dir: &Path, retention: std::time::Duration) -> Result<usize> {
    let table = load(dir, TableAt::Latest).await?;
    let retention = chrono::Duration::from_std(retention).context("the retention is too long")?;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        // The table's default (7 days) guards readers of old versions; the user chose another.
        .with_enforce_retention_duration(false)
        .await
        .with_context(|| format!("vacuuming the Delta table at {}", dir.display()))?;
    Ok(metrics.files_deleted.len())
}
