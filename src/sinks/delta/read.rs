//! Reading a Delta table back: the data files of a version (for `rtds
//! query`, with time travel) and the ids `rtds reconcile` reads back. A data
//! file of a partitioned table holds the other columns; its partition values
//! are in the log, and the rows read get them back as columns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use deltalake_core::DeltaTable;
use deltalake_core::kernel::LogicalFileView;

pub use super::table::TableAt;
use crate::row::{COLUMNS, INGESTED_AT};
use crate::sinks::files::{ids_of, read_files};

/// A data file and the values of its partition columns (not in the file).
#[derive(Debug, Clone)]
pub struct DataFile {
    pub path: PathBuf,
    pub partition: HashMap<String, Option<String>>,
}

impl DataFile {
    /// The log's entry `file` of `table`, a local table.
    pub fn of(table: &DeltaTable, file: &LogicalFileView) -> Result<Self> {
        let root = table
            .table_url()
            .to_file_path()
            .map_err(|_| anyhow::anyhow!("{} is not a local path", table.table_url()))?;
        Ok(Self { path: root.join(file.path().as_ref()), partition: file.partition_values_map() })
    }
}

/// The data files of the table at `dir` as of `at` (only those of that
/// version: not the ones compaction replaced), in the log's order, and the
/// table's schema.
pub async fn files(dir: &Path, at: TableAt) -> Result<(SchemaRef, Vec<DataFile>)> {
    let table = super::table::load(dir, at).await?;
    let snapshot = table.snapshot().context("reading the Delta table's state")?;
    let files = snapshot.log_data().iter().map(|f| DataFile::of(&table, &f)).collect::<Result<_>>()?;
    Ok((snapshot.snapshot().arrow_schema(), files))
}

/// The table at `dir` as of `at` as record batches (only `columns` if given)
/// and their schema.
pub async fn read(dir: &Path, at: TableAt, columns: Option<&[&str]>) -> Result<(Option<SchemaRef>, Vec<RecordBatch>)> {
    let (schema, files) = files(dir, at).await?;
    let schema = match columns {
        None => schema,
        Some(columns) => {
            let indices = columns
                .iter()
                .map(|c| schema.index_of(c).with_context(|| format!("no column {c} in the Delta table")))
                .collect::<Result<Vec<_>>>()?;
            Arc::new(schema.project(&indices).context("choosing the Delta table's columns")?)
        }
    };
    let of = schema.clone();
    // File reads and decompression off the async threads.
    let batches = tokio::task::spawn_blocking(move || read_data_files(&files, &of))
        .await
        .context("reading the Delta table's files")??;
    Ok((Some(schema), batches))
}

/// The rows of `files` as batches of `schema`: the columns each file holds and
/// its partition values.
pub fn read_data_files(files: &[DataFile], schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut out = Vec::new();
    for file in files {
        for batch in read_files(std::slice::from_ref(&file.path), Some(&names))?.1 {
            out.push(
                with_partition(&batch, &file.partition, schema)
                    .with_context(|| format!("reading {}", file.path.display()))?,
            );
        }
    }
    Ok(out)
}

/// `batch` as a batch of `schema`: its columns by name, the partition's values
/// for those it does not hold.
fn with_partition(
    batch: &RecordBatch,
    partition: &HashMap<String, Option<String>>,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column: ArrayRef = match (batch.column_by_name(field.name()), partition.get(field.name())) {
                (Some(column), _) => column.clone(),
                (None, Some(value)) => Arc::new(StringArray::from(vec![value.as_deref(); rows])),
                (None, None) => anyhow::bail!("no column {} in the file nor in its partition values", field.name()),
            };
            if column.data_type() == field.data_type() {
                return Ok(column);
            }
            arrow::compute::cast(&column, field.data_type()).with_context(|| format!("reading column {}", field.name()))
        })
        .collect::<Result<Vec<_>>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).context("assembling a Delta table's rows")
}

/// Every id of the table's latest version, as often as it occurs, each with
/// the ingest stamp of its version, for `rtds reconcile`.
pub async fn ids(dir: &Path) -> Result<Vec<(String, Option<i64>)>> {
    ids_of(&read(dir, TableAt::Latest, Some(&[COLUMNS[0].name, INGESTED_AT])).await?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn a_partition_value_becomes_a_column_in_the_schema_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("nat", DataType::Utf8, true),
            Field::new("city", DataType::Utf8, true),
        ]));
        let file = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("city", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            file,
            vec![Arc::new(StringArray::from(vec!["a", "b"])), Arc::new(StringArray::from(vec!["Oslo", "Bergen"]))],
        )
        .unwrap();
        let nat = HashMap::from([("nat".to_owned(), Some("NO".to_owned()))]);
        let rows = with_partition(&batch, &nat, &schema).unwrap();
        assert_eq!(rows.schema(), schema);
        let nat_column = rows.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((nat_column.value(0), nat_column.value(1)), ("NO", "NO"));
        let null = HashMap::from([("nat".to_owned(), None)]);
        assert_eq!(with_partition(&batch, &null, &schema).unwrap().column(1).null_count(), 2);
        let err = with_partition(&batch, &HashMap::new(), &schema).unwrap_err();
        assert!(err.to_string().contains("no column nat"), "{err}");
    }
}
