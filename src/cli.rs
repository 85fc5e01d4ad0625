//! Command-line parsing only: every option is also an `RTDS_<NAME>` environment
//! variable, so Airflow passes parameters as env and never inside a shell string.
//! Secrets (passwords, SASL) are never options: they come from env or files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::names;
pub use crate::sinks::{SinkKind, SinkOpts, cassandra::CassandraOpts, parquet::ParquetOpts, postgres::PostgresOpts};

/// The settings read only from the environment or a file (secrets, and what
/// names them), for the --help of every subcommand that reads them.
macro_rules! store_env_only {
    () => {
        "\nRead only from the environment (secrets never go on the command line):\n  \
         RTDS_POSTGRES_URL          PostgreSQL URL, with its password (or RTDS_POSTGRES_URL_FILE: a file holding it)\n  \
         RTDS_POSTGRES_CA_FILE      CA certificate(s) to verify PostgreSQL's TLS certificate\n  \
         RTDS_CASSANDRA_USER        Cassandra user\n  \
         RTDS_CASSANDRA_PASSWORD    Cassandra password (or RTDS_CASSANDRA_PASSWORD_FILE: a file holding it)\n  \
         RTDS_CASSANDRA_CA_FILE     CA certificate(s) to verify Cassandra's TLS certificate\n"
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "rtds",
    version,
    about = "Real-time user-data pipeline: randomuser.me -> Kafka -> DataFusion SQL -> Cassandra / PostgreSQL / Parquet",
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

#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "RTDS_BROKERS", default_value = "127.0.0.1:9092", global = true,
          value_parser = names::parse_brokers)]
    pub brokers: String,

    /// Any librdkafka setting as key=value (repeatable; in the env, comma-separated).
    /// Secret keys (*password*, *secret*, *.key*) are refused here: put them in
    /// RTDS_KAFKA_OPTIONS or in the file of --kafka-config.
    #[arg(long = "kafka-option", env = "RTDS_KAFKA_OPTIONS", value_delimiter = ',',
          global = true, value_parser = names::parse_key_value)]
    pub kafka_options: Vec<(String, String)>,

    /// A file of librdkafka settings, one key=value a line (# comments): the place for SASL/TLS secrets.
    #[arg(long, env = "RTDS_KAFKA_CONFIG", global = true)]
    pub kafka_config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, env = "RTDS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Serve Prometheus metrics (text format) on http://ADDR/metrics while running.
    #[arg(long, env = "RTDS_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
    /// Consume clean rows and upsert them into Cassandra, PostgreSQL or Parquet files.
    #[command(after_help = concat!("Examples:\n  \
        rtds load --sink cassandra\n  \
        RTDS_POSTGRES_URL=postgres://... rtds load --sink postgres\n  \
        rtds load --sink parquet --out ./data --follow\n", store_env_only!()))]
    Load(LoadArgs),
    /// Connect to Kafka, Cassandra and PostgreSQL as configured and report each one's state and version.
    #[command(after_help = store_env_only!())]
    Check(CheckArgs),
    /// Prove one run's chain from its stages' JSON summaries: every record ingest produced was
    /// transformed, every row reached each store (read back by id), every dead letter is in the DLQ.
    #[command(after_help = concat!("Examples:\n  \
        rtds reconcile \"$(rtds ingest ...)\" \"$(rtds transform ...)\" \"$(rtds load --sink postgres ...)\"\n  \
        cat summaries.jsonl | rtds reconcile\n\
        Exit 1 names what is missing (the first 20 ids or offset ranges, and the count).\n", store_env_only!()))]
    Reconcile(ReconcileArgs),
    /// DataFusion SQL over the Parquet files `rtds load --sink parquet` wrote (table <table>).
    #[command(after_help = "Examples:\n  \
        rtds query \"SELECT gender, count(*) FROM created_users GROUP BY gender\"\n  \
        rtds query --out /data \"SELECT * FROM created_users LIMIT 5\" | jq .\n\
        A table on a terminal, JSON lines when piped; exit 2 with DataFusion's message on bad SQL.\n")]
    Query(QueryArgs),
}

/// Options shared by the stages that consume Kafka: how long they run and in what batches.
#[derive(Debug, Clone, Args)]
pub struct ConsumeOpts {
    /// Consumer group.
    #[arg(long, env = "RTDS_GROUP")]
    pub group: Option<String>,
    /// Run until SIGTERM/SIGINT instead of stopping at the end of the input seen at start.
    #[arg(long, env = "RTDS_FOLLOW")]
    pub follow: bool,
    /// Records per batch [default: 1000 for transform, 5000 for load].
    #[arg(long, env = "RTDS_BATCH_SIZE", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: Option<u32>,
    /// Longest wait to fill a batch before processing what is there (e.g. 20ms): bounds the latency a slow input adds.
    #[arg(long, env = "RTDS_MAX_WAIT", default_value = "20ms", value_parser = names::parse_duration)]
    pub max_wait: Duration,
    /// Bounded runs: how long records below the end the run must reach may stay unreadable (an open
    /// Kafka transaction holds them back) before the run fails instead of stopping short.
    #[arg(long, env = "RTDS_END_WAIT", default_value = "2m", value_parser = names::parse_duration)]
    pub end_wait: Duration,
    /// Dead-letter topic for records that cannot be processed.
    #[arg(long, env = "RTDS_DLQ_TOPIC", default_value = "users_dlq", value_parser = names::parse_topic)]
    pub dlq_topic: String,
    /// Read exactly the records an upstream run produced to the input topic, given its JSON summary
    /// line (as the DAG passes the previous task's; several, one a line, for the replicas of an
    /// upstream stage): a bounded batch over those offsets, without a consumer group, so nothing is
    /// committed and a --follow service of the stage is never in the way.
    #[arg(long, env = "RTDS_FROM_SUMMARY", conflicts_with_all = ["follow", "group"])]
    pub from_summary: Option<String>,
    /// With --from-summary: read only share K of N (e.g. 2/3), the partitions whose number is K-1
    /// modulo N, so that N replicas of the stage split one run's records without a group.
    #[arg(long, env = "RTDS_SHARE", requires = "from_summary", value_parser = names::parse_share)]
    pub share: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UserSource {
    /// A randomuser.me-compatible HTTP API.
    Randomuser,
    /// The built-in seeded generator (no network needed).
    Generate,
}

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Where users come from.
    #[arg(long, env = "RTDS_SOURCE", value_enum, default_value_t = UserSource::Randomuser)]
    pub source: UserSource,
    /// API endpoint for --source randomuser.
    #[arg(long, env = "RTDS_URL", default_value = "https://randomuser.me/api/", value_parser = names::parse_http_url)]
    pub url: String,
    /// The API's own `seed` parameter (same seed, same users).
    #[arg(long, env = "RTDS_API_SEED")]
    pub api_seed: Option<String>,
    /// Nationalities for the API, e.g. "us,gb,fr".
    #[arg(long, env = "RTDS_NAT")]
    pub nat: Option<String>,
    /// Users per API request (the API serves at most 5000).
    #[arg(long, env = "RTDS_PAGE_SIZE", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub page_size: u32,
    /// HTTP timeout for the whole request (connect has its own, shorter one).
    #[arg(long, env = "RTDS_HTTP_TIMEOUT", default_value = "30s", value_parser = names::parse_duration)]
    pub http_timeout: Duration,
    /// Attempts per request before giving up (429, 5xx, timeouts, connection errors are retried).
    #[arg(long, env = "RTDS_RETRIES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: u32,
    /// First wait between retries; it doubles each attempt, with jitter, up to 60s.
    #[arg(long, env = "RTDS_RETRY_BASE", default_value = "500ms", value_parser = names::parse_duration)]
    pub retry_base: Duration,
    /// Seed of the built-in generator (same seed, same users).
    #[arg(long, env = "RTDS_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Stop after this many users.
    #[arg(long, env = "RTDS_COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this long (e.g. 60s, 5m).
    #[arg(long, env = "RTDS_DURATION", value_parser = names::parse_duration)]
    pub duration: Option<Duration>,
    /// No bound: run until SIGTERM/SIGINT (the real-time path).
    #[arg(long, env = "RTDS_FOLLOW", conflicts_with_all = ["count", "duration"])]
    pub follow: bool,
    /// Produce at most this many users per second (e.g. 100/s or 100).
    #[arg(long, env = "RTDS_RATE", value_parser = names::parse_rate)]
    pub rate: Option<f64>,
    /// Topic to produce to (created if missing).
    #[arg(long, env = "RTDS_TOPIC", default_value = "users_raw", value_parser = names::parse_topic)]
    pub topic: String,
    #[command(flatten)]
    pub topics: TopicOpts,
    /// Producer compression codec.
    #[arg(long, env = "RTDS_COMPRESSION", value_enum, default_value_t = Compression::Lz4)]
    pub compression: Compression,
}

/// How a stage creates the topics it reads and writes when they are missing
/// (on a cluster: replication 3 with the brokers' min.insync.replicas=2).
#[derive(Debug, Clone, Copy, Args)]
pub struct TopicOpts {
    /// Partitions of a topic the stage creates.
    #[arg(long, env = "RTDS_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Replication factor of a topic the stage creates.
    #[arg(long, env = "RTDS_REPLICATION_FACTOR", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..=16))]
    pub replication_factor: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct TransformArgs {
    /// Topic of raw users.
    #[arg(long, env = "RTDS_INPUT_TOPIC", default_value = "users_raw", value_parser = names::parse_topic)]
    pub input_topic: String,
    /// Topic of clean rows.
    #[arg(long, env = "RTDS_OUTPUT_TOPIC", default_value = "users_created", value_parser = names::parse_topic)]
    pub output_topic: String,
    /// SQL file replacing the built-in transform (input table: users_raw).
    #[arg(long, env = "RTDS_SQL")]
    pub sql: Option<PathBuf>,
    /// Consume-transform-produce in Kafka transactions (exactly once between topics).
    #[arg(long, env = "RTDS_EXACTLY_ONCE")]
    pub exactly_once: bool,
    /// With --exactly-once: commit a transaction once it has been open this long (it also commits
    /// whenever the input has nothing more waiting, and at --transaction-records).
    #[arg(long, env = "RTDS_TRANSACTION_EVERY", default_value = "100ms", value_parser = names::parse_duration)]
    pub transaction_every: Duration,
    /// With --exactly-once: commit a transaction once it has taken this many records.
    #[arg(long, env = "RTDS_TRANSACTION_RECORDS", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub transaction_records: u64,
    #[command(flatten)]
    pub consume: ConsumeOpts,
    #[command(flatten)]
    pub topics: TopicOpts,
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Where rows go.
    #[arg(long, env = "RTDS_SINK", value_enum)]
    pub sink: SinkKind,
    /// Topic of clean rows.
    #[arg(long, env = "RTDS_INPUT_TOPIC", default_value = "users_created", value_parser = names::parse_topic)]
    pub input_topic: String,
    /// Table (Cassandra, PostgreSQL) or folder name (Parquet); created if absent.
    #[arg(long, env = "RTDS_TABLE", default_value = "created_users", value_parser = names::parse_identifier)]
    pub table: String,
    /// How long to keep retrying a store that is down before failing (offsets stay uncommitted).
    #[arg(long, env = "RTDS_RETRY_FOR", default_value = "10m", value_parser = names::parse_duration)]
    pub retry_for: Duration,
    #[command(flatten)]
    pub consume: ConsumeOpts,
    #[command(flatten)]
    pub topics: TopicOpts,
    /// Every sink's own options (src/sinks/).
    #[command(flatten)]
    pub sinks: SinkOpts,
}

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// The SQL (DataFusion's dialect).
    pub sql: String,
    /// The table the files are registered as: OUT/<table>/ holds them.
    #[arg(long, env = "RTDS_TABLE", default_value = "created_users", value_parser = names::parse_identifier)]
    pub table: String,
    #[command(flatten)]
    pub parquet: ParquetOpts,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub cassandra: CassandraOpts,
    #[command(flatten)]
    pub postgres: PostgresOpts,
    /// Services to check (default: all).
    #[arg(long, env = "RTDS_CHECK", value_enum, value_delimiter = ',',
          default_values_t = [Service::Kafka, Service::Cassandra, Service::Postgres])]
    pub only: Vec<Service>,
}

#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// The stages' JSON summary lines (or, in RTDS_SUMMARIES, one a line); none: read them from stdin.
    #[arg(env = "RTDS_SUMMARIES", value_delimiter = '\n')]
    pub summaries: Vec<String>,
    /// The first stage of the chain to prove: a summary of each stage from here to --to must be given.
    /// Anything but ingest checks the run as partial, and says so.
    #[arg(long, env = "RTDS_FROM", value_enum, default_value_t = ChainStage::Ingest)]
    pub from: ChainStage,
    /// The last stage of the chain to prove (what it produced is not checked as read).
    #[arg(long, env = "RTDS_TO", value_enum, default_value_t = ChainStage::Load)]
    pub to: ChainStage,
    /// Fail when more than this share of a stage's input went to the DLQ (e.g. 1%, 0.05; 0 forbids any).
    #[arg(long, env = "RTDS_MAX_DLQ_SHARE", default_value = "1%", value_parser = names::parse_share_of_one)]
    pub max_dlq_share: f64,
    /// How long reading an offset range back from Kafka may stall before reconcile gives up.
    #[arg(long, env = "RTDS_READ_TIMEOUT", default_value = "60s", value_parser = names::parse_duration)]
    pub read_timeout: Duration,
    #[command(flatten)]
    pub cassandra: CassandraOpts,
    #[command(flatten)]
    pub postgres: PostgresOpts,
}

/// The stages of a run's chain, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainStage {
    Ingest,
    Transform,
    Load,
}

impl ChainStage {
    pub const ALL: [ChainStage; 3] = [ChainStage::Ingest, ChainStage::Transform, ChainStage::Load];

    /// As a summary's `stage` names it.
    pub fn name(self) -> &'static str {
        match self {
            ChainStage::Ingest => "ingest",
            ChainStage::Transform => "transform",
            ChainStage::Load => "load",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Kafka,
    Cassandra,
    Postgres,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_count_is_a_usage_error() {
        let err = Cli::try_parse_from(["rtds", "ingest", "--count", "-1"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn help_lists_the_settings_read_only_from_the_environment() {
        let help = |sub: &str| {
            let mut cmd = Cli::command();
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
            ] {
                assert!(text.contains(var), "rtds {sub} --help lacks {var}");
            }
        }
        assert!(help("transform").contains("RTDS_TRANSACTIONAL_ID"));
    }

    #[test]
    fn topic_names_are_validated() {
        assert!(Cli::try_parse_from(["rtds", "ingest", "--topic", "users raw"]).is_err());
        assert!(Cli::try_parse_from(["rtds", "ingest", "--topic", "users_raw.v2"]).is_ok());
    }
}
