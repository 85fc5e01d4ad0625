//! What the sinks that write files (Parquet, Delta) share: one `--out`, and
//! the rows as one Arrow batch of text columns, and reading the files back.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::row::{COLUMNS, INGESTED_AT, Kind, UserRow, WIDTH, last_per_id, stamp_millis};

/// Whether `dir` holds a Delta table (its log): the Parquet sink leaves it
/// alone, the Delta sink opens it.
pub fn is_delta_table(dir: &Path) -> bool {
    dir.join("_delta_log").is_dir()
}

/// Where the file sinks write (and `rtds query`, `rtds maintain` read).
#[derive(Debug, Clone, clap::Args)]
pub struct FilesOpts {
    /// Output directory of the file sinks (--sink parquet, delta): a table is OUT/<table>/.
    #[arg(long, env = "RTDS_OUT", default_value = "data")]
    pub out: PathBuf,
}

/// The load's options of the file sinks.
#[derive(Debug, Clone, clap::Args)]
pub struct FileSinkOpts {
    #[command(flatten)]
    pub files: FilesOpts,
    /// Partition the Delta table by these columns when the load creates it (--sink delta;
    /// comma-separated, e.g. `nat`); a table that exists keeps its own partitioning.
    #[arg(long, env = "RTDS_PARTITION_BY", value_delimiter = ',')]
    pub partition_by: Vec<String>,
}

/// The files' schema: every column as text, as sent (the id never null), and
/// the ingest stamp of each row's version.
pub fn text_schema() -> SchemaRef {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|c| Field::new(c.name, DataType::Utf8, c.kind != Kind::Id))
        .chain([Field::new(INGESTED_AT, DataType::Utf8, true)])
        .collect();
    Arc::new(Schema::new(fields))
}

/// How the file sinks write Parquet: zstd at its default level, a dictionary
/// only for the columns whose values repeat (`Column::repeats`).
pub fn parquet_properties() -> parquet::file::properties::WriterProperties {
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::schema::types::ColumnPath;
    COLUMNS
        .iter()
        .filter(|c| !c.repeats)
        .fold(parquet::file::properties::WriterProperties::builder(), |b, c| {
            b.set_column_dictionary_enabled(ColumnPath::from(c.name), false)
        })
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build()
}

/// The rows as one batch of `schema` (`text_schema`), each id once (its last
/// row): as an upsert would leave it, where a file holds what it is given.
pub fn text_batch(schema: &SchemaRef, rows: &[&UserRow]) -> Result<RecordBatch> {
    rows_batch(schema, &last_per_id(rows.to_vec(), |r| r.uuid()))
}

/// The rows as one batch of `schema` (`text_schema`), every one of them.
pub fn rows_batch(schema: &SchemaRef, rows: &[&UserRow]) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> =
        (0..WIDTH).map(|c| Arc::new(rows.iter().map(|r| r.get(c)).collect::<StringArray>()) as ArrayRef).collect();
    columns.push(Arc::new(rows.iter().map(|r| r.ingested_at()).collect::<StringArray>()));
    RecordBatch::try_new(schema.clone(), columns).context("building the batch of rows")
}

/// The record batches of Parquet `files`, in order, only `columns` if given,
/// and the files' schema (`None` when there is no file).
pub fn read_files(
    files: &[impl AsRef<Path>],
    columns: Option<&[&str]>,
) -> Result<(Option<SchemaRef>, Vec<RecordBatch>)> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let (mut schema, mut batches) = (None, Vec::new());
    for path in files {
        let path = path.as_ref();
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
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

/// Every id in `batches` (read with the id and ingest-stamp columns), as often
/// as it occurs, each with the ingest stamp of its version in milliseconds
/// (none in files of an earlier version), for `rtds reconcile`.
pub fn ids_of(batches: &[RecordBatch]) -> Result<Vec<(String, Option<i64>)>> {
    let mut ids = Vec::new();
    for batch in batches {
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

#[cfg(test)]
mod tests {
    use parquet::schema::types::ColumnPath;

    use super::*;

    #[test]
    fn a_dictionary_only_where_values_repeat() {
        let props = parquet_properties();
        let dictionary = |name: &str| props.dictionary_enabled(&ColumnPath::from(name));
        for name in ["id", "email", "username", "phone", "address", "dob", "registered_date"] {
            assert!(!dictionary(name), "{name}: most users have their own");
        }
        for name in ["first_name", "last_name", "gender", "post_code", "picture", INGESTED_AT] {
            assert!(dictionary(name), "{name}: values repeat");
        }
    }
}
