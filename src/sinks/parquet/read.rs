//! Reading the Parquet sink's finished files: for `rtds query`, and the ids
//! `rtds reconcile` reads back.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;

use crate::row::{COLUMNS, INGESTED_AT, stamp_millis};

/// The record batches of the finished files of `dir` (`part-*.parquet`, in
/// name order: oldest first), only `columns` if given, and the files' schema
/// (`None` when there is no file).
pub fn read(dir: &Path, columns: Option<&[&str]>) -> Result<(Option<SchemaRef>, Vec<RecordBatch>)> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
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
    let (mut schema, mut batches) = (None, Vec::new());
    for path in files {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut builder =
            ParquetRecordBatchReaderBuilder::try_new(file).with_context(|| format!("reading {}", path.display()))?;
        if let Some(columns) = columns {
            let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
            builder = builder.with_projection(mask);
        }
        for batch in builder.build().with_context(|| format!("reading {}", path.display()))? {
            let batch = batch.with_context(|| format!("reading {}", path.display()))?;
            schema.get_or_insert_with(|| batch.schema());
            batches.push(batch);
        }
    }
    Ok((schema, batches))
}

/// Every id in the finished files of `dir`, as often as it occurs (files are
/// append-only: a replayed batch gives an id twice), each with the ingest
/// stamp of its version in milliseconds (none in files of an earlier version),
/// for `rtds reconcile`.
pub fn ids(dir: &Path) -> Result<Vec<(String, Option<i64>)>> {
    let mut ids = Vec::new();
    for batch in read(dir, Some(&[COLUMNS[0].name, INGESTED_AT]))?.1 {
        let text = |name: &str| batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let id = text(COLUMNS[0].name).context("the id column is not text")?;
        let stamp = text(INGESTED_AT);
        for row in 0..batch.num_rows() {
            if id.is_valid(row) {
                let at = stamp.filter(|s| s.is_valid(row)).and_then(|s| stamp_millis(s.value(row)));
                ids.push((id.value(row).to_owned(), at));
            }
        }
    }
    Ok(ids)
}
