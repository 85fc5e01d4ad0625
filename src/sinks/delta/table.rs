//! Opening a Delta table at a directory: created on first use with the file
//! sinks' schema (`files::text_schema`) and the partitioning asked for,
//! checked against them otherwise.

use std::path::Path;

use anyhow::{Context, Result};
use deltalake_core::kernel::{DataType, StructField};
use deltalake_core::{DeltaTable, DeltaTableBuilder};

use crate::sinks::files::text_schema;

/// The table's location as delta-rs takes it (an absolute `file://` URL).
pub fn url(dir: &Path) -> Result<url::Url> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    deltalake_core::ensure_table_uri(dir.to_string_lossy())
        .with_context(|| format!("using {} as a Delta table's location", dir.display()))
}

pub use crate::sinks::files::is_delta_table as is_table;

/// The table at `dir`, created if there is none (partitioned by
/// `partition_by`, if any). A directory that holds other files (the Parquet
/// sink's) is refused: the two would mix. A table that exists keeps its
/// partitioning: asked for another, the load stops.
pub async fn open_or_create(dir: &Path, partition_by: &[String]) -> Result<DeltaTable> {
    check_partitioning(partition_by)?;
    if !is_table(dir) && std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        anyhow::bail!(
            "{} holds files but no Delta table (_delta_log): another sink's output? Use another --out or --table",
            dir.display()
        );
    }
    let table = DeltaTable::try_from_url(url(dir)?)
        .await
        .with_context(|| format!("opening the Delta table at {}", dir.display()))?;
    if table.version().is_some() {
        check_schema(&table, dir)?;
        let has =
            table.snapshot().context("reading the Delta table's metadata")?.metadata().partition_columns().to_vec();
        if !partition_by.is_empty() && has != partition_by {
            crate::error::usage(format!(
                "the Delta table at {} is partitioned by {has:?}, not {partition_by:?}: a table keeps the \
                 partitioning it was created with (leave out --partition-by, or use another --table)",
                dir.display()
            ))?;
        }
        return Ok(table);
    }
    let columns: Vec<StructField> = text_schema()
        .fields()
        .iter()
        .map(|f| StructField::new(f.name().clone(), DataType::STRING, f.is_nullable()))
        .collect();
    table
        .create()
        .with_table_name(dir.file_name().and_then(|n| n.to_str()).unwrap_or("created_users"))
        .with_columns(columns)
        .with_partition_columns(partition_by.iter().cloned())
        .await
        .with_context(|| format!("creating the Delta table at {}", dir.display()))
}

/// Partition columns are columns of the row contract, each once, and not the
/// id (a directory a row).
fn check_partitioning(partition_by: &[String]) -> Result<()> {
    let schema = text_schema();
    for (i, column) in partition_by.iter().enumerate() {
        if schema.field_with_name(column).is_err() {
            let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
            crate::error::usage(format!("--partition-by {column}: not a column of the rows (columns: {names:?})"))?;
        }
        if column == crate::row::COLUMNS[0].name {
            crate::error::usage(format!("--partition-by {column}: the id is unique, a partition would hold one row"))?;
        }
        if partition_by[..i].contains(column) {
            crate::error::usage(format!("--partition-by names {column} twice"))?;
        }
    }
    Ok(())
}

/// The table's columns are the file sinks' (names, in order): its rows are
/// written as those.
fn check_schema(table: &DeltaTable, dir: &Path) -> Result<()> {
    let schema = table.snapshot().context("reading the Delta table's schema")?.schema();
    let have: Vec<&str> = schema.fields().map(|f| f.name().as_str()).collect();
    let want: Vec<String> = text_schema().fields().iter().map(|f| f.name().clone()).collect();
    if have != want {
        crate::error::usage(format!(
            "the Delta table at {} has columns {have:?}, not the row contract's {want:?}",
            dir.display()
        ))?;
    }
    Ok(())
}

/// The table at `dir` as it is now, as of version `version`, or as of time `at`.
pub async fn load(dir: &Path, at: TableAt) -> Result<DeltaTable> {
    if !is_table(dir) {
        anyhow::bail!("no Delta table at {}: `rtds load --sink delta` writes one there", dir.display());
    }
    let mut builder = DeltaTableBuilder::from_url(url(dir)?)?;
    builder = match at {
        TableAt::Latest => builder,
        TableAt::Version(v) => builder.with_version(v),
        TableAt::Time(t) => {
            // delta-rs reads a time before the first commit as the first version: a table that
            // did not exist then has no rows to show for it.
            if let Some(first) = first_commit(dir).filter(|first| t < *first) {
                crate::error::usage(format!(
                    "the Delta table at {} did not exist at {}: its first commit is of {}",
                    dir.display(),
                    t.to_rfc3339(),
                    first.to_rfc3339()
                ))?;
            }
            builder.with_timestamp(t)
        }
    };
    builder.load().await.with_context(|| format!("loading the Delta table at {} ({at})", dir.display()))
}

/// When the oldest commit the log still holds was written (delta-rs dates a
/// version by its commit file's modification time).
fn first_commit(dir: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    let commits = std::fs::read_dir(dir.join("_delta_log")).ok()?;
    let first = commits
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .min_by_key(|e| e.file_name())?;
    Some(first.metadata().ok()?.modified().ok()?.into())
}

/// Which version of a table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableAt {
    #[default]
    Latest,
    Version(u64),
    Time(chrono::DateTime<chrono::Utc>),
}

impl std::fmt::Display for TableAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableAt::Latest => write!(f, "its latest version"),
            TableAt::Version(v) => write!(f, "version {v}"),
            TableAt::Time(t) => write!(f, "as of {}", t.to_rfc3339()),
        }
    }
}
