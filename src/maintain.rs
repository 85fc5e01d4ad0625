//! `rtds maintain`: keep a Delta table that a stream appends to small in
//! files: compact its small data files (one commit, the rows unchanged), then
//! vacuum the files no version within the retention reads. One JSON summary
//! line: files before and after, rows rewritten, files deleted.

use std::time::Duration;

use anyhow::Result;

use crate::sinks::FilesOpts;
use crate::sinks::delta::maintain::{Compacted, compact, vacuum};
use crate::validate;

/// The options of `rtds maintain`.
#[derive(Debug, Clone, clap::Args)]
pub struct MaintainArgs {
    /// The Delta table: OUT/<table>/.
    #[arg(long, env = "RTDS_TABLE", default_value = "created_users", value_parser = validate::parse_identifier)]
    pub table: String,
    /// Compact data files smaller than this into files of about this size (bytes, or e.g. 128MB).
    #[arg(long, env = "RTDS_TARGET_FILE_SIZE", default_value = "128MB", value_parser = validate::parse_bytes)]
    pub target_file_size: u64,
    /// Delete the files no version younger than this reads (readers of older versions lose them).
    #[arg(long, env = "RTDS_RETENTION", default_value = "168h", value_parser = validate::parse_duration)]
    pub retention: Duration,
    #[command(flatten)]
    pub files: FilesOpts,
}

#[derive(serde::Serialize)]
struct Summary<'a> {
    stage: &'static str,
    store: String,
    #[serde(flatten)]
    compacted: &'a Compacted,
    vacuumed: usize,
}

pub async fn run(args: &MaintainArgs) -> Result<()> {
    let dir = args.files.out.join(&args.table);
    let compacted = compact(&dir, args.target_file_size).await?;
    let vacuumed = vacuum(&dir, args.retention).await?;
    tracing::info!(
        files_before = compacted.files_before,
        files_after = compacted.files_after,
        vacuumed,
        "maintenance finished"
    );
    crate::summary::keep(&Summary {
        stage: "maintain",
        store: dir.display().to_string(),
        compacted: &compacted,
        vacuumed,
    })
}
