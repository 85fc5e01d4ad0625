//! The Delta Lake sink: a Delta table at `OUT/<table>/` (delta-rs), one
//! commit a batch, each commit carrying an application transaction per Kafka
//! partition it covers (app id `rtds:<stream>:<partition>`, version the
//! partition's last offset written), as delta-io's kafka-delta-ingest does.
//! A batch read again (a crash between the Delta commit and the Kafka offset
//! commit, a rebalance) is recognised by those versions and not written twice;
//! the offsets are committed after the Delta commit. Readers get snapshots and
//! time travel (`rtds query --version`, `--as-of`); `rtds maintain` compacts
//! and vacuums. The table is partitioned only if the load that creates it is
//! given `--partition-by`.

pub mod maintain;
mod read;
mod table;
mod write;

pub use read::{TableAt, files, read};
pub use table::is_table;
pub use write::DeltaWriter;

use anyhow::Result;

use super::{Connector, FileSinkOpts, Held, Writer};

/// The sink's `Connector`.
pub struct Delta;

impl Connector for Delta {
    type Options = FileSinkOpts;

    const ENV_ONLY: &'static [(&'static str, &'static str)] = &[];

    /// Files: nothing to reach.
    const SERVER: Option<&'static str> = None;

    /// A commit a batch: each also writes a log entry, reads the table's
    /// state back and, every hundred versions, a checkpoint, so fewer and
    /// larger batches at full speed (`--max-wait` still cuts a batch short at
    /// modest rates; bench/README.md, "Delta against Parquet").
    const BATCH_SIZE: usize = 50_000;

    async fn open(opts: &FileSinkOpts, table: &str) -> Result<Box<dyn Writer>> {
        Ok(Box::new(DeltaWriter::open(&opts.files.out.join(table), &opts.partition_by).await?))
    }

    /// The summary's store is the table's directory: every id of its current
    /// version, as often as it occurs.
    async fn read_back(_: &FileSinkOpts, store: &str, _: &[String]) -> Result<Held> {
        Ok(Held::appended_once(read::ids(std::path::Path::new(store)).await?))
    }

    fn address(opts: &FileSinkOpts) -> String {
        opts.files.out.display().to_string()
    }

    async fn server_version(_: &FileSinkOpts) -> Result<String> {
        anyhow::bail!("the Delta sink writes files: it has no server")
    }
}
