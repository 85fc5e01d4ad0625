//! Parquet sink: one zstd file per batch, `OUT/<table>/part-<time>-<uuid>.parquet`,
//! written under a temporary name, fsynced, then renamed (readers never see a
//! partial file). Files are append-only: a replayed batch lands in a new file,
//! so readers that need one row per user take the latest by id.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{Rejected, WriteError};
use crate::row::{COLUMNS, INGESTED_AT, Kind, UserRow, WIDTH, last_per_id, stamp_millis};

/// Parquet's options.
#[derive(Debug, Clone, clap::Args)]
pub struct ParquetOpts {
    /// Output directory for --sink parquet (files go to OUT/<table>/).
    #[arg(long, env = "RTDS_OUT", default_value = "data")]
    pub out: PathBuf,
}

pub struct ParquetSink {
    pub dir: PathBuf,
    schema: SchemaRef,
}

impl ParquetSink {
    /// Create `out/table/` and make sure we can write there.
    pub fn open(opts: &ParquetOpts, table: &str) -> Result<Self> {
        let dir = opts.out.join(table);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating the output directory {}", dir.display()))?;
        let probe = dir.join(format!(".rtds-write-test-{}", std::process::id()));
        File::create(&probe).with_context(|| format!("cannot write to the output directory {}", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        // Every column as text, as sent; the id never null.
        let fields: Vec<Field> = COLUMNS
            .iter()
            .map(|c| Field::new(c.name, DataType::Utf8, c.kind != Kind::Id))
            .chain([Field::new(INGESTED_AT, DataType::Utf8, true)])
            .collect();
        Ok(Self { dir, schema: Arc::new(Schema::new(fields)) })
    }

    async fn write(&mut self, rows: &[UserRow]) -> Result<Rejected, WriteError> {
        let batch = self.batch(rows).map_err(WriteError::Fatal)?;
        let dir = self.dir.clone();
        // File I/O and compression off the async threads.
        tokio::task::spawn_blocking(move || write_file(&dir, &batch))
            .await
            .map_err(|e| WriteError::Fatal(e.into()))?
            .map_err(WriteError::Transient)?;
        Ok(Vec::new())
    }

    /// The rows as one batch, each id once (its last row): as an upsert
    /// would leave it, where a file holds what it is given.
    fn batch(&self, rows: &[UserRow]) -> Result<RecordBatch> {
        let rows = last_per_id(rows.iter().collect(), |r| r.id());
        let mut columns: Vec<ArrayRef> =
            (0..WIDTH).map(|c| Arc::new(rows.iter().map(|r| r.get(c)).collect::<StringArray>()) as ArrayRef).collect();
        columns.push(Arc::new(rows.iter().map(|r| r.ingested_at()).collect::<StringArray>()));
        RecordBatch::try_new(self.schema.clone(), columns).context("building the Parquet batch")
    }
}

impl super::Store for ParquetSink {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }
    fn write<'a>(&'a mut self, rows: &'a [UserRow]) -> futures::future::BoxFuture<'a, Result<Rejected, WriteError>> {
        Box::pin(ParquetSink::write(self, rows))
    }
}

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

fn write_file(dir: &Path, batch: &RecordBatch) -> Result<PathBuf> {
    let name = format!("part-{}-{}.parquet", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"), uuid::Uuid::new_v4());
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(&name);
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).context("starting a Parquet file")?;
    writer.write(batch).context("writing a Parquet row group")?;
    let file = writer.into_inner().context("finishing the Parquet file")?;
    file.sync_all().with_context(|| format!("fsync {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, &dest).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    // The rename is durable once the directory is synced.
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("fsync {}", dir.display()))?;
    Ok(dest)
}
