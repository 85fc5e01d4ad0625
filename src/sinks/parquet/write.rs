//! Writing Parquet files: one zstd file per batch,
//! `OUT/<table>/part-<time>-<uuid>.parquet`, each id once (its last row).

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::row::UserRow;
use crate::sinks::files::{parquet_properties, text_batch, text_schema};
use crate::sinks::{FileSinkOpts, ReadAt, Rejected, WriteError, Writer};

pub struct ParquetWriter {
    pub dir: PathBuf,
    schema: SchemaRef,
}

impl ParquetWriter {
    /// Create `out/table/` and make sure we can write there.
    pub fn open(opts: &FileSinkOpts, table: &str) -> Result<Self> {
        if !opts.partition_by.is_empty() {
            crate::error::usage("--partition-by is for --sink delta: the Parquet sink writes a file a batch")?;
        }
        let dir = opts.files.out.join(table);
        if crate::sinks::files::is_delta_table(&dir) {
            anyhow::bail!(
                "{} is a Delta table: load it with --sink delta, or use another --out or --table",
                dir.display()
            );
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating the output directory {}", dir.display()))?;
        let probe = dir.join(format!(".rtds-write-test-{}", std::process::id()));
        File::create(&probe).with_context(|| format!("cannot write to the output directory {}", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        Ok(Self { dir, schema: text_schema() })
    }

    async fn write(&mut self, rows: &[UserRow]) -> Result<Rejected, WriteError> {
        let batch = text_batch(&self.schema, &rows.iter().collect::<Vec<_>>()).map_err(WriteError::Fatal)?;
        let dir = self.dir.clone();
        // File I/O and compression off the async threads.
        tokio::task::spawn_blocking(move || write_file(&dir, &batch))
            .await
            .map_err(|e| WriteError::Fatal(e.into()))?
            .map_err(WriteError::Transient)?;
        Ok(Vec::new())
    }
}

impl Writer for ParquetWriter {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }
    fn write<'a>(
        &'a mut self,
        rows: &'a [UserRow],
        _: ReadAt<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Rejected, WriteError>> {
        Box::pin(ParquetWriter::write(self, rows))
    }
}

fn write_file(dir: &Path, batch: &RecordBatch) -> Result<PathBuf> {
    let name = format!("part-{}-{}.parquet", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"), uuid::Uuid::new_v4());
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(&name);
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(parquet_properties())).context("starting a Parquet file")?;
    writer.write(batch).context("writing a Parquet row group")?;
    let file = writer.into_inner().context("finishing the Parquet file")?;
    file.sync_all().with_context(|| format!("fsync {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, &dest).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    // The rename is durable once the directory is synced.
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("fsync {}", dir.display()))?;
    Ok(dest)
}
