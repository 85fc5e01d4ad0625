//! Parquet's options.

use std::path::PathBuf;

/// Parquet's options.
#[derive(Debug, Clone, clap::Args)]
pub struct ParquetOpts {
    /// Output directory for --sink parquet (files go to OUT/<table>/).
    #[arg(long, env = "RTDS_OUT", default_value = "data")]
    pub out: PathBuf,
}
