//! The options of `rtds aggregate`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::kafka::TopicOpts;
use crate::sinks::{Sink, SinkOpts};
use crate::stage::{ConsumeOpts, ExactlyOnceOpts};
use crate::validate;

#[derive(Debug, Clone, Args)]
pub struct AggregateArgs {
    /// Topic of raw users (the table `users_raw`, as the transform's SQL sees it), or of clean rows
    /// (the table `users_created`) when the SQL reads that: JSON or Avro, record by record.
    #[arg(long, env = "RTDS_INPUT_TOPIC", default_value = "users_raw", value_parser = validate::parse_topic)]
    pub input_topic: String,
    /// Topic of the windows' rows (JSON, keyed by window and group: a window emitted again overwrites itself).
    #[arg(long, env = "RTDS_OUTPUT_TOPIC", default_value = "users_windows", value_parser = validate::parse_topic)]
    pub output_topic: String,
    /// SQL file grouping by an event-time window: tumble(interval '1 minute') or
    /// hop(interval '10 seconds', interval '1 minute'), e.g.
    /// `SELECT tumble(interval '1 minute') AS window, nat, count(*) AS signups FROM users_raw GROUP BY window, nat`.
    #[arg(long, env = "RTDS_SQL")]
    pub sql: PathBuf,
    /// The event time, an SQL expression over users_raw (a timestamp, or text in RFC 3339,
    /// e.g. registered['date']) [default: the record's ingest stamp].
    #[arg(long, env = "RTDS_EVENT_TIME")]
    pub event_time: Option<String>,
    /// How far the watermark trails the largest event time seen: a window is emitted once the
    /// watermark passes its end, and a record of a window already emitted goes to the DLQ as late.
    #[arg(long, env = "RTDS_ALLOWED_LATENESS", default_value = "5s", value_parser = validate::parse_duration)]
    pub allowed_lateness: Duration,
    /// Also upsert the windows' rows into this store (postgres or cassandra), in a table whose
    /// columns are the SQL's result (the window as <name>_start and <name>_end), keyed by window and group.
    #[arg(long, env = "RTDS_SINK", value_enum)]
    pub sink: Option<Sink>,
    /// With --sink: the table (created if absent).
    #[arg(long, env = "RTDS_TABLE", default_value = "users_windows", value_parser = validate::parse_identifier)]
    pub table: String,
    /// With --sink: how long to keep retrying a store that is down before failing (offsets stay uncommitted).
    #[arg(long, env = "RTDS_RETRY_FOR", default_value = "10m", value_parser = validate::parse_duration)]
    pub retry_for: Duration,
    #[command(flatten)]
    pub transactions: ExactlyOnceOpts,
    #[command(flatten)]
    pub consume: ConsumeOpts,
    #[command(flatten)]
    pub topics: TopicOpts,
    /// Every sink's own options (src/sinks/).
    #[command(flatten)]
    pub sinks: SinkOpts,
}
