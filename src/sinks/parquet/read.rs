//! Reading the Parquet sink's finished files: for `rtds query`, and the ids
//! `rtds reconcile` reads back.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::row::{COLUMNS, INGESTED_AT};
use crate::sinks::files::{ids_of, read_files};

/// The record batches of the finished files of `dir` (`part-*.parquet`, in
/// name order: oldest first), only `columns` if given, and the files' schema
/// (`None` when there is no file).
pub fn read(dir: &Path, columns: Option<&[&str]>) -> Result<(Option<SchemaRef>, Vec<RecordBatch>)> {
    read_files(&finished(dir)?, columns)
}

/// The finished files of `dir`, oldest first.
fn finished(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("part-") && name.ends_with(".parquet") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Every id in the finished files of `dir`, as often as it occurs (files are
/// append-only: a replayed batch gives an id twice), each with the ingest
/// stamp of its version in milliseconds, for `rtds reconcile`.
pub fn ids(dir: &Path) -> Result<Vec<(String, Option<i64>)>> {
    ids_of(&read(dir, Some(&[COLUMNS[0].name, INGESTED_AT]))?.1)
}
