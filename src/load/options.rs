//! The options of `rtds load`.

use std::time::Duration;

use clap::Args;

use crate::kafka::TopicOpts;
use crate::sinks::{Sink, SinkOpts};
use crate::stage::ConsumeOpts;
use crate::validate;

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Where rows go.
    #[arg(long, env = "RTDS_SINK", value_enum)]
    pub sink: Sink,
    /// Topic of clean rows.
    #[arg(long, env = "RTDS_INPUT_TOPIC", default_value = "users_created", value_parser = validate::parse_topic)]
    pub input_topic: String,
    /// Table (Cassandra, PostgreSQL, Delta) or folder name (Parquet); created if absent.
    #[arg(long, env = "RTDS_TABLE", default_value = "created_users", value_parser = validate::parse_identifier)]
    pub table: String,
    /// How long to keep retrying a store that is down before failing (offsets stay uncommitted).
    #[arg(long, env = "RTDS_RETRY_FOR", default_value = "10m", value_parser = validate::parse_duration)]
    pub retry_for: Duration,
    #[command(flatten)]
    pub consume: ConsumeOpts,
    #[command(flatten)]
    pub topics: TopicOpts,
    /// Every sink's own options (src/sinks/).
    #[command(flatten)]
    pub sinks: SinkOpts,
}
