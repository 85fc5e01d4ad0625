//! Writing Parquet files: one zstd file per batch,
//! `OUT/<table>/part-<time>-<uuid>.parquet`, each id once (its last row).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::ParquetOpts;
use crate::row::{COLUMNS, INGESTED_AT, Kind, UserRow, WIDTH, last_per_id};
use crate::sinks::{Rejected, WriteError, Writer};

pub struct ParquetWriter {
    pub dir: PathBuf,
    schema: SchemaRef,
}

impl ParquetWriter {
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

impl Writer for ParquetWriter {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }
    fn write<'a>(&'a mut self, rows: &'a [UserRow]) -> futures::future::BoxFuture<'a, Result<Rejected, WriteError>> {
        Box::pin(ParquetWriter::write(self, rows))
    }
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
