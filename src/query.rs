//! `rtds query SQL`: DataFusion SQL over what `rtds load --sink parquet` or
//! `--sink delta` wrote (OUT/<table>/part-*.parquet, or the Delta table there,
//! as of its latest version, `--version` or `--as-of`), registered as table
//! <table>.
//! A table on a terminal; JSON lines, one a row, when piped.
//!
//! The files are read into memory first (DataFusion's Parquet reader is a
//! feature this binary leaves out, for its size and build time): fine for
//! inspecting a run's output, not for scanning a data lake.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::error::usage;
use crate::sinks::FilesOpts;
use crate::sinks::delta::{self, TableAt};
use crate::validate;

/// The options of `rtds query`.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// The SQL (DataFusion's dialect).
    pub sql: String,
    /// The table the files are registered as: OUT/<table>/ holds them.
    #[arg(long, env = "RTDS_TABLE", default_value = "created_users", value_parser = validate::parse_identifier)]
    pub table: String,
    /// A Delta table as of this version (time travel).
    #[arg(long, env = "RTDS_VERSION", conflicts_with = "as_of")]
    pub version: Option<u64>,
    /// A Delta table as it was at this time (RFC 3339, e.g. 2026-12-05T22:00:00Z).
    #[arg(long, env = "RTDS_AS_OF", value_parser = validate::parse_time)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    pub files: FilesOpts,
}

impl QueryArgs {
    /// Which version of a Delta table to read.
    fn at(&self) -> TableAt {
        match (self.version, self.as_of) {
            (Some(v), _) => TableAt::Version(v),
            (None, Some(t)) => TableAt::Time(t),
            (None, None) => TableAt::Latest,
        }
    }
}

pub async fn run(args: &QueryArgs) -> Result<()> {
    let dir = args.files.out.join(&args.table);
    let (schema, batches) = if delta::is_table(&dir) {
        delta::read(&dir, args.at(), None).await?
    } else if args.at() != TableAt::Latest {
        return usage(format!("--version and --as-of read a Delta table: {} holds none", dir.display()));
    } else {
        crate::sinks::parquet::read(&dir, None)?
    };
    let Some(schema) = schema else {
        anyhow::bail!(
            "no Parquet files in {}: `rtds load --sink parquet` or `--sink delta` writes them there",
            dir.display()
        );
    };
    let files = batches.len();
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema, vec![batches]).context("registering the Parquet files as a table")?;
    ctx.register_table(args.table.as_str(), Arc::new(table))
        .with_context(|| format!("registering table {}", args.table))?;
    let frame = match ctx.sql(&args.sql).await {
        Ok(frame) => frame,
        // One line: DataFusion lists the valid fields on a line of their own.
        Err(e) => return usage(format!("invalid SQL: {}", e.to_string().replace('\n', " "))),
    };
    let out = frame.collect().await.context("running the query")?;
    let rows: usize = out.iter().map(|b| b.num_rows()).sum();
    let mut stdout = std::io::stdout().lock();
    if stdout.is_terminal() {
        let table = arrow::util::pretty::pretty_format_batches(&out).context("formatting the result")?;
        writeln!(stdout, "{table}").context("writing the result")?;
    } else {
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut stdout);
        writer.write_batches(&out.iter().collect::<Vec<_>>()).context("writing the result as JSON lines")?;
        writer.finish().context("writing the result as JSON lines")?;
    }
    tracing::info!(rows, batches_read = files, dir = %dir.display(), "query finished");
    Ok(())
}
