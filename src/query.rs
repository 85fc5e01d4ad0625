//! `rtds query SQL`: DataFusion SQL over what `rtds load --sink parquet`
//! wrote (OUT/<table>/part-*.parquet), the files registered as table <table>.
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
use crate::sinks::parquet::ParquetOpts;
use crate::validate;

/// The options of `rtds query`.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// The SQL (DataFusion's dialect).
    pub sql: String,
    /// The table the files are registered as: OUT/<table>/ holds them.
    #[arg(long, env = "RTDS_TABLE", default_value = "created_users", value_parser = validate::parse_identifier)]
    pub table: String,
    #[command(flatten)]
    pub parquet: ParquetOpts,
}

pub async fn run(args: &QueryArgs) -> Result<()> {
    let dir = args.parquet.out.join(&args.table);
    let (schema, batches) = crate::sinks::parquet::read(&dir, None)?;
    let Some(schema) = schema else {
        anyhow::bail!("no Parquet files in {}: `rtds load --sink parquet` writes them there", dir.display());
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
