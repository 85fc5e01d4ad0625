//! rtds: a real-time user-data pipeline. One module per stage (ingest,
//! transform, load), one shared Kafka module, one file per sink; `entry.rs` is
//! the command-line entry point (`main.rs` calls it).

pub mod check;
pub mod cli;
pub mod delivery;
pub mod entry;
pub mod error;
pub mod ingest;
pub mod kafka;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod progress;
pub mod query;
pub mod reconcile;
pub mod resident;
pub mod row;
pub mod secrets;
pub mod shutdown;
pub mod sinks;
pub mod stage;
pub mod summary;
pub mod transform;

use cli::{Cli, Command};

/// Run the subcommand the user chose.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match &cli.command {
        Command::Ingest(args) => ingest::run(global, args).await,
        Command::Transform(args) => transform::run(global, args).await,
        Command::Load(args) => load::run(global, args).await,
        Command::Check(args) => check::run(global, args).await,
        Command::Reconcile(args) => reconcile::run(global, args).await,
        Command::Query(args) => query::run(args).await,
    }
}
