//! Command-line parsing only: every option is also an `RTDS_<NAME>` environment
//! variable, so Airflow passes parameters as env and never inside a shell string.
//! Secrets (passwords, SASL) are never options: they come from env or files.

use std::net::SocketAddr;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::aggregate::AggregateArgs;
use crate::check::CheckArgs;
use crate::ingest::IngestArgs;
use crate::kafka::ClientOpts;
use crate::load::LoadArgs;
use crate::logging::LogFormat;
use crate::maintain::MaintainArgs;
use crate::offsets::OffsetsArgs;
use crate::query::QueryArgs;
use crate::reconcile::ReconcileArgs;
use crate::registry::RegistryOpts;
use crate::replay::ReplayArgs;
use crate::sinks::Sink;
use crate::transform::TransformArgs;

#[derive(Debug, Parser)]
#[command(
    name = "rtds",
    version,
    about = "Real-time user-data pipeline: randomuser.me -> Kafka -> DataFusion SQL -> Cassandra / PostgreSQL / Parquet / Delta Lake",
    long_about = None,
    after_help = "Every option is also an environment variable RTDS_<NAME> (shown as [env: ...]).\n\
                  Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// The command line: `Cli`'s, with the settings each sink reads only from the
/// environment added to the help of the subcommands that reach a store.
pub fn command() -> clap::Command {
    let mut lines = String::from("\nRead only from the environment (secrets never go on the command line):\n");
    let registry = crate::registry::ENV_ONLY.iter();
    for (name, what) in Sink::ALL.iter().flat_map(|s| s.env_only()).chain(registry) {
        lines.push_str(&format!("  {name:<26} {what}\n"));
    }
    let mut cmd = Cli::command();
    for sub in ["load", "check", "reconcile"] {
        cmd = cmd.mut_subcommand(sub, |c| {
            let help = format!("{}{lines}", c.get_after_help().map(|h| h.to_string()).unwrap_or_default());
            c.after_help(help)
        });
    }
    cmd
}

#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    #[command(flatten)]
    pub kafka: ClientOpts,

    #[command(flatten)]
    pub registry: RegistryOpts,

    /// Log format on stderr.
    #[arg(long, env = "RTDS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Serve Prometheus metrics (text format) on http://ADDR/metrics while running.
    #[arg(long, env = "RTDS_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch users from a randomuser.me-compatible API or the seeded generator and produce them to Kafka.
    #[command(after_help = "Examples:\n  \
        rtds ingest --source generate --count 10000 --seed 42\n  \
        rtds ingest --source randomuser --url https://randomuser.me/api/ --duration 60s --rate 50/s\n  \
        RTDS_COUNT=1000 RTDS_SOURCE=generate rtds ingest")]
    Ingest(IngestArgs),
    /// Consume raw users, run DataFusion SQL over them and produce clean rows; bad records go to the DLQ.
    #[command(after_help = "Examples:\n  \
        rtds transform                       # drain users_raw up to its end, then exit\n  \
        rtds transform --follow              # run until SIGTERM\n  \
        rtds transform --sql my_rules.sql    # replace the built-in SQL (input table: users_raw)\n\n\
        Read only from the environment:\n  \
        RTDS_TRANSACTIONAL_ID      the Kafka transactional id of --exactly-once (default rtds-transform-<group>-<input topic>):\n                             \
        give each replica its own\n")]
    Transform(TransformArgs),
    /// Counts, sums and averages of raw users by event-time window (tumbling or hopping): DataFusion's
    /// partial and final aggregation over the stream, a row per window and group.
    #[command(after_help = "Examples:\n  \
        rtds aggregate --sql signups.sql --output-topic signups_per_minute\n  \
        rtds aggregate --sql signups.sql --follow\n  \
        rtds aggregate --sql signups.sql --event-time \"registered['date']\" --allowed-lateness 1m\n\
        signups.sql: SELECT tumble(interval '1 minute') AS window, nat, count(*) AS signups\n             \
        FROM users_raw GROUP BY window, nat\n\
        A bounded run emits every window once its input ends; --follow runs until SIGTERM. Offsets\n\
        are committed up to the oldest record of an open window: a restart rebuilds those windows.\n\n\
        Read only from the environment:\n  \
        RTDS_TRANSACTIONAL_ID      the Kafka transactional id of --exactly-once (default rtds-aggregate-<group>-<input topic>):\n                             \
        give each replica its own\n")]
    Aggregate(AggregateArgs),
    /// Consume clean rows and upsert them into Cassandra or PostgreSQL, or append them to Parquet files or a Delta table.
    #[command(after_help = "Examples:\n  \
        rtds load --sink cassandra\n  \
        RTDS_POSTGRES_URL=postgres://... rtds load --sink postgres\n  \
        rtds load --sink parquet --out ./data --follow\n  \
        rtds load --sink delta --out ./lake          # exactly once into ./lake/created_users\n")]
    Load(LoadArgs),
    /// Connect to Kafka, Cassandra and PostgreSQL as configured and report each one's state and version.
    Check(CheckArgs),
    /// Prove one run's chain from its stages' JSON summaries: every record ingest produced was
    /// transformed, every row reached each store (read back by id), every dead letter is in the DLQ.
    #[command(after_help = "Examples:\n  \
        rtds reconcile \"$(rtds ingest ...)\" \"$(rtds transform ...)\" \"$(rtds load --sink postgres ...)\"\n  \
        cat summaries.jsonl | rtds reconcile\n\
        Exit 1 names what is missing (the first 20 ids or offset ranges, and the count).\n")]
    Reconcile(ReconcileArgs),
    /// DataFusion SQL over the Parquet files or the Delta table a load wrote (table <table>).
    #[command(after_help = "Examples:\n  \
        rtds query \"SELECT gender, count(*) FROM created_users GROUP BY gender\"\n  \
        rtds query --out /data \"SELECT * FROM created_users LIMIT 5\" | jq .\n  \
        rtds query --out /lake --version 3 \"SELECT count(*) FROM created_users\"   # a Delta table as of version 3\n\
        A table on a terminal, JSON lines when piped; exit 2 with DataFusion's message on bad SQL.\n")]
    Query(QueryArgs),
    /// Compact a Delta table's small files (one commit, rows unchanged), then vacuum old files.
    #[command(after_help = "Examples:\n  \
        rtds maintain --out /data                      # OUT/created_users, files under 128MB, keep 7 days\n  \
        rtds maintain --target-file-size 64MB --retention 24h\n")]
    Maintain(MaintainArgs),
    /// Show each consumer group's committed offsets, end offsets and lag on a topic; move a group
    /// to the earliest or latest offsets or to a time (refused while it has members).
    #[command(after_help = "Examples:\n  \
        rtds offsets --topic users_created                          # every group that reads it\n  \
        rtds offsets --topic users_raw --group rtds-transform\n  \
        rtds offsets --topic users_raw --group rtds-transform --reset-to 2026-12-05T10:00:00Z --dry-run\n  \
        rtds offsets --topic users_raw --group rtds-transform --reset-to earliest\n")]
    Offsets(OffsetsArgs),
    /// Send dead letters back to the topic the stage that refused them read, once the cause is fixed.
    #[command(after_help = "Examples:\n  \
        rtds replay --dlq-topic users_dlq --stage load --sink postgres --dry-run   # counts by reason\n  \
        rtds replay --stage transform --reason 'missing field' --from-time 2026-12-05T10:00:00Z\n\
        Each dead letter is replayed once per selection (progress under a group); a record that fails\n\
        again returns to the DLQ counting its replays, and stays there after --max-replays.\n")]
    Replay(ReplayArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn bad_count_is_a_usage_error() {
        let err = Cli::try_parse_from(["rtds", "ingest", "--count", "-1"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn help_lists_the_settings_read_only_from_the_environment() {
        let help = |sub: &str| {
            let mut cmd = command();
            cmd.build();
            cmd.find_subcommand_mut(sub).unwrap().render_long_help().to_string()
        };
        for sub in ["load", "check", "reconcile"] {
            let text = help(sub);
            for var in [
                "RTDS_POSTGRES_URL ",
                "RTDS_POSTGRES_URL_FILE",
                "RTDS_POSTGRES_CA_FILE",
                "RTDS_CASSANDRA_USER",
                "RTDS_CASSANDRA_PASSWORD ",
                "RTDS_CASSANDRA_PASSWORD_FILE",
                "RTDS_CASSANDRA_CA_FILE",
                "RTDS_SCHEMA_REGISTRY_PASSWORD_FILE",
            ] {
                assert!(text.contains(var), "rtds {sub} --help lacks {var}");
            }
        }
        assert!(help("transform").contains("RTDS_TRANSACTIONAL_ID"));
        assert!(help("aggregate").contains("RTDS_TRANSACTIONAL_ID"));
    }

    #[test]
    fn ingest_lingers_25ms_unless_told_from_0_to_10s() {
        let linger = |args: &[&str]| match Cli::try_parse_from([&["rtds", "ingest"][..], args].concat()) {
            Ok(Cli { command: Command::Ingest(a), .. }) => Ok(a.linger),
            Ok(_) => unreachable!("parsed as ingest"),
            Err(e) => Err(e.exit_code()),
        };
        assert_eq!(linger(&[]), Ok(crate::kafka::LINGER_STREAM));
        assert_eq!(linger(&["--linger", "0ms"]), Ok(std::time::Duration::ZERO));
        assert_eq!(linger(&["--linger", "10s"]), Ok(std::time::Duration::from_secs(10)));
        assert_eq!(linger(&["--linger", "11s"]), Err(2));
        assert_eq!(linger(&["--linger", "soon"]), Err(2));
    }

    #[test]
    fn topic_names_are_validated() {
        assert!(Cli::try_parse_from(["rtds", "ingest", "--topic", "users raw"]).is_err());
        assert!(Cli::try_parse_from(["rtds", "ingest", "--topic", "users_raw.v2"]).is_ok());
    }
}
