//! `rtds offsets`: where each consumer group stands on a topic (committed
//! offset, the partition's low and high watermarks, the lag), and moving a
//! group to the earliest or latest offsets or to a time, so that its next run
//! starts there (a backfill, or skipping what is not wanted). A reset refuses
//! a group with members: their commits would overwrite it, and a stage that
//! is reading keeps its position whatever is committed meanwhile.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::error::usage;
use crate::kafka::ClientOpts;
use crate::kafka::offsets::{GroupState, commit_for_group, committed, groups, looker, offsets_at, watermarks};
use crate::validate;

/// The options of `rtds offsets`.
#[derive(Debug, Clone, clap::Args)]
pub struct OffsetsArgs {
    /// The topic.
    #[arg(long, env = "RTDS_TOPIC", default_value = "users_raw", value_parser = validate::parse_topic)]
    pub topic: String,
    /// The consumer group (repeat for several); without it, every group that committed offsets on the topic.
    #[arg(long = "group", env = "RTDS_GROUP", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Move the group (one --group) to `earliest`, `latest` or a time (RFC 3339: the first record
    /// stamped at or after it), partition by partition.
    #[arg(long, env = "RTDS_RESET_TO", value_parser = parse_reset)]
    pub reset_to: Option<ResetTo>,
    /// With --reset-to: show the offsets it would commit, commit nothing.
    #[arg(long, env = "RTDS_DRY_RUN", requires = "reset_to")]
    pub dry_run: bool,
}

/// Where `--reset-to` moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Time(chrono::DateTime<chrono::Utc>),
}

fn parse_reset(s: &str) -> Result<ResetTo, String> {
    match s {
        "earliest" => Ok(ResetTo::Earliest),
        "latest" => Ok(ResetTo::Latest),
        _ => validate::parse_time(s)
            .map(ResetTo::Time)
            .map_err(|_| format!("{s:?} is neither earliest, latest nor an RFC 3339 time")),
    }
}

/// A partition as a group sees it.
#[derive(Debug, Serialize)]
struct PartitionView {
    partition: i32,
    /// The next offset the group reads (none committed: `None`).
    committed: Option<i64>,
    low: i64,
    high: i64,
    /// Records from the committed offset (or the low watermark) to the high watermark.
    lag: i64,
    /// A reset: the offset it commits.
    #[serde(skip_serializing_if = "Option::is_none")]
    reset_to: Option<i64>,
}

#[derive(Debug, Serialize)]
struct GroupView {
    group: String,
    #[serde(flatten)]
    state: GroupState,
    lag: i64,
    partitions: Vec<PartitionView>,
}

#[derive(Serialize)]
struct Summary {
    stage: &'static str,
    topic: String,
    groups: Vec<GroupView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset: Option<&'static str>,
}

pub async fn run(kafka: &ClientOpts, args: &OffsetsArgs) -> Result<()> {
    if args.reset_to.is_some() && args.groups.len() != 1 {
        return usage("--reset-to moves one group: name it with --group");
    }
    let summary = tokio::task::block_in_place(|| look(kafka, args))?;
    for g in &summary.groups {
        tracing::info!(group = %g.group, state = %g.state.state, members = g.state.members, lag = g.lag, "{}", g.describe());
    }
    crate::summary::keep(&summary)
}

/// Read every group's offsets (and reset the one named, if asked). Blocking.
fn look(kafka: &ClientOpts, args: &OffsetsArgs) -> Result<Summary> {
    let probe = looker(kafka, &format!("rtds-offsets-{}", uuid::Uuid::new_v4()))?;
    let marks = watermarks(&probe, kafka, &args.topic)?;
    let partitions: Vec<i32> = marks.keys().copied().collect();
    let known = groups(&probe, kafka, None)?;
    let names: Vec<String> = if args.groups.is_empty() { known.keys().cloned().collect() } else { args.groups.clone() };
    let mut views = Vec::new();
    let mut reset = None;
    for name in names {
        let consumer = looker(kafka, &name)?;
        let offsets = committed(&consumer, &args.topic, &partitions)
            .with_context(|| format!("reading the offsets {name} committed on {}", args.topic))?;
        // Without --group: only the groups that read this topic.
        if args.groups.is_empty() && offsets.values().all(Option::is_none) {
            continue;
        }
        let state = known.get(&name).cloned().unwrap_or(GroupState { state: "Unknown".into(), members: 0 });
        let targets = match args.reset_to {
            Some(to) => Some(reset_targets(&probe, &args.topic, &marks, to)?),
            None => None,
        };
        if let Some(targets) = &targets {
            if state.members > 0 {
                return usage(format!(
                    "group {name} has {} active member(s) (state {}): stop its consumers before resetting it",
                    state.members, state.state
                ));
            }
            if !args.dry_run {
                commit_for_group(&consumer, &args.topic, targets)
                    .with_context(|| format!("resetting {name} on {}", args.topic))?;
            }
            reset = Some(if args.dry_run { "dry run: nothing committed" } else { "committed" });
        }
        let view = |p: i32| {
            let (low, high) = marks[&p];
            let at = offsets[&p];
            let lag = high - at.unwrap_or(low).max(low);
            PartitionView { partition: p, committed: at, low, high, lag, reset_to: targets.as_ref().map(|t| t[&p]) }
        };
        let partitions: Vec<PartitionView> = partitions.iter().map(|p| view(*p)).collect();
        views.push(GroupView { group: name, state, lag: partitions.iter().map(|p| p.lag).sum(), partitions });
    }
    Ok(Summary { stage: "offsets", topic: args.topic.clone(), groups: views, reset })
}

/// Per partition, the offset `to` names.
fn reset_targets(
    probe: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    marks: &BTreeMap<i32, (i64, i64)>,
    to: ResetTo,
) -> Result<BTreeMap<i32, i64>> {
    Ok(match to {
        ResetTo::Earliest => marks.iter().map(|(p, (low, _))| (*p, *low)).collect(),
        ResetTo::Latest => marks.iter().map(|(p, (_, high))| (*p, *high)).collect(),
        ResetTo::Time(t) => offsets_at(probe, topic, marks, t)?,
    })
}

impl GroupView {
    /// One line a group: per partition committed/high (lag).
    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .partitions
            .iter()
            .map(|p| {
                let at = p.committed.map_or("-".to_owned(), |o| o.to_string());
                let reset = p.reset_to.map_or(String::new(), |o| format!(" -> {o}"));
                format!("{}: {at}/{} lag {}{reset}", p.partition, p.high, p.lag)
            })
            .collect();
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_is_earliest_latest_or_a_time() {
        assert_eq!(parse_reset("earliest"), Ok(ResetTo::Earliest));
        assert_eq!(parse_reset("latest"), Ok(ResetTo::Latest));
        let t = parse_reset("2026-12-05T10:00:00Z").unwrap();
        assert!(matches!(t, ResetTo::Time(at) if at.timestamp() == 1_796_464_800));
        assert!(parse_reset("yesterday").unwrap_err().contains("neither earliest"));
    }
}
