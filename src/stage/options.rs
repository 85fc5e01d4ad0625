//! The settings of a consuming stage's batch loop: its group or ranges, how
//! long it runs, the size and wait of a batch, where dead letters go.

use std::time::Duration;

use clap::Args;

use crate::validate;

/// A group instance id: letters, digits, `.`, `_`, `-` and `{hostname}`, at most 249 characters.
fn parse_instance_id(s: &str) -> Result<String, String> {
    let bare = s.replace("{hostname}", "");
    let ok = !s.is_empty() && s.len() <= 249 && bare.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("invalid group instance id {s:?}: use letters, digits, '.', '_', '-' and {{hostname}}"))
    }
}

/// Options shared by the stages that consume Kafka: how long they run and in what batches.
#[derive(Debug, Clone, Args)]
pub struct ConsumeOpts {
    /// Consumer group.
    #[arg(long, env = "RTDS_GROUP")]
    pub group: Option<String>,
    /// A static member of the group with this id (`{hostname}` becomes the host's name): restarted
    /// within the group's session timeout (45 s), it takes its partitions back at once instead of
    /// waiting for its old self to time out. Two running members with one id fence each other.
    #[arg(long, env = "RTDS_GROUP_INSTANCE_ID", value_parser = parse_instance_id,
          conflicts_with_all = ["from_summary", "from_time", "to_time"])]
    pub group_instance_id: Option<String>,
    /// Run until SIGTERM/SIGINT instead of stopping at the end of the input seen at start.
    #[arg(long, env = "RTDS_FOLLOW")]
    pub follow: bool,
    /// Records per batch [default: 1000 for transform, 5000 for load, 50000 for load --sink delta].
    #[arg(long, env = "RTDS_BATCH_SIZE", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: Option<u32>,
    /// Longest wait to fill a batch before processing what is there (e.g. 20ms): bounds the latency a slow input adds.
    #[arg(long, env = "RTDS_MAX_WAIT", default_value = "20ms", value_parser = validate::parse_duration)]
    pub max_wait: Duration,
    /// Bounded runs: how long records below the end the run must reach may stay unreadable (an open
    /// Kafka transaction holds them back) before the run fails instead of stopping short.
    #[arg(long, env = "RTDS_END_WAIT", default_value = "2m", value_parser = validate::parse_duration)]
    pub end_wait: Duration,
    /// Dead-letter topic for records that cannot be processed.
    #[arg(long, env = "RTDS_DLQ_TOPIC", default_value = "users_dlq", value_parser = validate::parse_topic)]
    pub dlq_topic: String,
    /// Read exactly the records an upstream run produced to the input topic, given its JSON summary
    /// line (as the DAG passes the previous task's; several, one a line, for the replicas of an
    /// upstream stage): a bounded batch over those offsets, without a consumer group, so nothing is
    /// committed and a --follow service of the stage is never in the way.
    #[arg(long, env = "RTDS_FROM_SUMMARY", conflicts_with_all = ["follow", "group"])]
    pub from_summary: Option<String>,
    /// A bounded run over the records stamped from this time on (RFC 3339, e.g. 2026-12-05T10:00:00Z;
    /// the offsets looked up by Kafka's record timestamps), without a consumer group: a backfill
    /// that commits nothing and leaves the group's offsets where they are.
    #[arg(long, env = "RTDS_FROM_TIME", value_parser = validate::parse_time,
          conflicts_with_all = ["follow", "group", "from_summary"])]
    pub from_time: Option<chrono::DateTime<chrono::Utc>>,
    /// A bounded run over the records stamped before this time (RFC 3339), without a consumer
    /// group; with --from-time, the records between the two.
    #[arg(long, env = "RTDS_TO_TIME", value_parser = validate::parse_time,
          conflicts_with_all = ["follow", "group", "from_summary"])]
    pub to_time: Option<chrono::DateTime<chrono::Utc>>,
    /// With --from-summary: read only share K of N (e.g. 2/3), the partitions whose number is K-1
    /// modulo N, so that N replicas of the stage split one run's records without a group.
    #[arg(long, env = "RTDS_SHARE", requires = "from_summary", value_parser = validate::parse_share)]
    pub share: Option<(u32, u32)>,
}
