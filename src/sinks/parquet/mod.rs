//! The Parquet sink: one zstd file per batch under `OUT/<table>/`, written
//! under a temporary name, fsynced, then renamed (readers never see a partial
//! file). Files are append-only: a replayed batch lands in a new file.

mod read;
mod write;

pub use read::{ids, read};
pub use write::ParquetWriter;

use anyhow::Result;

use super::{Connector, FileSinkOpts, Held, Writer};

/// The sink's `Connector`.
pub struct Parquet;

impl Connector for Parquet {
    type Options = FileSinkOpts;

    const ENV_ONLY: &'static [(&'static str, &'static str)] = &[];

    /// Files: nothing to reach.
    const SERVER: Option<&'static str> = None;

    async fn open(opts: &FileSinkOpts, table: &str) -> Result<Box<dyn Writer>> {
        Ok(Box::new(ParquetWriter::open(opts, table)?))
    }

    /// The summary's store is the table's directory.
    async fn read_back(_: &FileSinkOpts, store: &str, _: &[String]) -> Result<Held> {
        Ok(Held::appended(ids(std::path::Path::new(store))?))
    }

    fn address(opts: &FileSinkOpts) -> String {
        opts.files.out.display().to_string()
    }

    async fn server_version(_: &FileSinkOpts) -> Result<String> {
        anyhow::bail!("the Parquet sink writes files: it has no server")
    }
}
