//! Reading a Delta table back: the data files of a version (for `rtds
//! query`, with time travel) and the ids `rtds reconcile` reads back.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

pub use super::table::TableAt;
use crate::row::{COLUMNS, INGESTED_AT};
use crate::sinks::files::{ids_of, read_files};

/// The data files of the table at `dir` as of `at` (only those of that
/// version: not the ones compaction replaced), in the log's order, and the
/// table's schema.
pub async fn files(dir: &Path, at: TableAt) -> Result<(SchemaRef, Vec<PathBuf>)> {
    let table = super::table::load(dir, at).await?;
    let schema = table.snapshot().context("reading the Delta table's schema")?.snapshot().arrow_schema();
    let uris =
        table.get_file_uris().with_context(|| format!("listing the files of the Delta table at {}", dir.display()))?;
    Ok((schema, uris.map(|uri| PathBuf::from(uri.strip_prefix("file://").unwrap_or(&uri))).collect()))
}

/// The table at `dir` as of `at` as record batches (only `columns` if given)
/// and their schema (the table's when it holds no row yet).
pub async fn read(dir: &Path, at: TableAt, columns: Option<&[&str]>) -> Result<(Option<SchemaRef>, Vec<RecordBatch>)> {
    let (schema, files) = files(dir, at).await?;
    let columns: Option<Vec<String>> = columns.map(|c| c.iter().map(|s| s.to_string()).collect());
    // File reads and decompression off the async threads.
    let (read, batches) = tokio::task::spawn_blocking(move || {
        let columns: Option<Vec<&str>> = columns.as_ref().map(|c| c.iter().map(String::as_str).collect());
        read_files(&files, columns.as_deref())
    })
    .await
    .context("reading the Delta table's files")??;
    Ok((read.or(Some(schema)), batches))
}

/// Every id of the table's latest version, as often as it occurs, each with
/// the ingest stamp of its version, for `rtds reconcile`.
pub async fn ids(dir: &Path) -> Result<Vec<(String, Option<i64>)>> {
    ids_of(&read(dir, TableAt::Latest, Some(&[COLUMNS[0].name, INGESTED_AT])).await?.1)
}
