//! The options of `rtds ingest`.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::avro::Format;
use crate::kafka::{Compression, TopicOpts};
use crate::validate;

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
    #[arg(long, env = "RTDS_URL", default_value = "https://randomuser.me/api/", value_parser = validate::parse_http_url)]
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
    #[arg(long, env = "RTDS_HTTP_TIMEOUT", default_value = "30s", value_parser = validate::parse_duration)]
    pub http_timeout: Duration,
    /// Attempts per request before giving up (429, 5xx, timeouts, connection errors are retried).
    #[arg(long, env = "RTDS_RETRIES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: u32,
    /// First wait between retries; it doubles each attempt, with jitter, up to 60s.
    #[arg(long, env = "RTDS_RETRY_BASE", default_value = "500ms", value_parser = validate::parse_duration)]
    pub retry_base: Duration,
    /// Seed of the built-in generator (same seed, same users).
    #[arg(long, env = "RTDS_SEED", default_value_t = 42)]
    pub seed: u64,
    /// The generator as an update stream over this many users: the records cycle over them, each
    /// round a new version of every one (the same id; the email carries the version).
    #[arg(long, env = "RTDS_UPDATE_IDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub update_ids: Option<u64>,
    /// Stop after this many users.
    #[arg(long, env = "RTDS_COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this long (e.g. 60s, 5m).
    #[arg(long, env = "RTDS_DURATION", value_parser = validate::parse_duration)]
    pub duration: Option<Duration>,
    /// No bound: run until SIGTERM/SIGINT (the real-time path).
    #[arg(long, env = "RTDS_FOLLOW", conflicts_with_all = ["count", "duration"])]
    pub follow: bool,
    /// Produce at most this many users per second (e.g. 100/s or 100).
    #[arg(long, env = "RTDS_RATE", value_parser = validate::parse_rate)]
    pub rate: Option<f64>,
    /// How long a record may wait to be sent with others (0 to 10s): with --rate, the records due
    /// in each window this long go at once; without, the producer lingers this long. Longer sends
    /// fewer requests, and every stage downstream reads fewer batches a second, for up to this
    /// much latency a record (bench/README.md, "Every goal in one run, and what a window costs").
    #[arg(long, env = "RTDS_LINGER", default_value = "25ms", value_parser = validate::parse_linger)]
    pub linger: Duration,
    /// Topic to produce to (created if missing).
    #[arg(long, env = "RTDS_TOPIC", default_value = "users_raw", value_parser = validate::parse_topic)]
    pub topic: String,
    #[command(flatten)]
    pub topics: TopicOpts,
    /// How records are written: JSON as the source sent them, or Avro of
    /// schemas/users_raw.avsc (registered as subject <topic>-value).
    #[arg(long, env = "RTDS_FORMAT", value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Producer compression codec.
    #[arg(long, env = "RTDS_COMPRESSION", value_enum, default_value_t = Compression::Lz4)]
    pub compression: Compression,
}
