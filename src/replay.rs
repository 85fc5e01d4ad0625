//! `rtds replay`: dead letters back to the topic the stage that refused them
//! read, once their cause is fixed (a new SQL, a widened column). Each goes
//! back as it came (key, value, ingest stamp) with headers saying it was
//! replayed and from which DLQ offset, and its replay count one higher: a
//! record that fails again returns to the DLQ with that count, and one
//! replayed `--max-replays` times stays there. Progress is committed under a
//! consumer group named after the DLQ and the selection, after every replayed
//! record is acknowledged: a second run with the same selection replays only
//! dead letters that came since. A bounded run: up to the DLQ's end at start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::BaseRecord;
use serde::Serialize;

use crate::delivery::{BatchAck, Ranges, Span, Status};
use crate::error::usage;
use crate::kafka::offsets::{GroupState, commit_for_group, committed, groups, looker, watermarks};
use crate::kafka::{self, ClientOpts, Compression};
use crate::validate;

/// The options of `rtds replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The dead-letter topic to replay.
    #[arg(long, env = "RTDS_DLQ_TOPIC", default_value = "users_dlq", value_parser = validate::parse_topic)]
    pub dlq_topic: String,
    /// Produce to this topic instead of the one the failed stage read (each dead letter's rtds-source-topic).
    #[arg(long = "to", env = "RTDS_REPLAY_TO", value_parser = validate::parse_topic)]
    pub to: Option<String>,
    /// Only the dead letters of this stage (transform, load).
    #[arg(long, env = "RTDS_REPLAY_STAGE", value_parser = ["transform", "load"])]
    pub stage: Option<String>,
    /// Only the load's dead letters of this sink.
    #[arg(long, env = "RTDS_REPLAY_SINK")]
    pub sink: Option<String>,
    /// Only the dead letters whose reason matches this regular expression (a word matches as a substring).
    #[arg(long, env = "RTDS_REPLAY_REASON", value_parser = parse_regex)]
    pub reason: Option<regex::Regex>,
    /// Only the dead letters sent to the DLQ at or after this time (RFC 3339).
    #[arg(long, env = "RTDS_FROM_TIME", value_parser = validate::parse_time)]
    pub from_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Only the dead letters sent to the DLQ before this time (RFC 3339).
    #[arg(long, env = "RTDS_TO_TIME", value_parser = validate::parse_time)]
    pub to_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Leave in the DLQ the dead letters already replayed this many times.
    #[arg(long, env = "RTDS_MAX_REPLAYS", default_value_t = 3)]
    pub max_replays: u32,
    /// Count what would be replayed, by reason; produce and commit nothing.
    #[arg(long, env = "RTDS_DRY_RUN")]
    pub dry_run: bool,
    /// The consumer group that keeps the replay's progress [default: rtds-replay-<dlq topic>-<the selection's key>].
    #[arg(long, env = "RTDS_GROUP")]
    pub group: Option<String>,
}

fn parse_regex(s: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(s).map_err(|e| format!("not a regular expression: {e}"))
}

impl ReplayArgs {
    /// The progress group: one per DLQ and selection, so that replaying one
    /// cause does not pass over the dead letters of another.
    fn group(&self) -> String {
        if let Some(g) = &self.group {
            return g.clone();
        }
        let selection = format!(
            "{:?}/{:?}/{:?}/{:?}/{:?}/{:?}",
            self.stage,
            self.sink,
            self.reason.as_ref().map(regex::Regex::as_str),
            self.from_time,
            self.to_time,
            self.to
        );
        let key = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, selection.as_bytes());
        format!("rtds-replay-{}-{}", self.dlq_topic, &key.simple().to_string()[..12])
    }

    /// Why a dead letter is left where it is, if it is.
    fn passes_over(&self, letter: &DeadLetter<'_, '_>) -> Option<&'static str> {
        if self.stage.as_deref().is_some_and(|s| letter.header("rtds-stage") != Some(s)) {
            return Some("another stage");
        }
        if self.sink.as_deref().is_some_and(|s| letter.header("rtds-sink") != Some(s)) {
            return Some("another sink");
        }
        if self.reason.as_ref().is_some_and(|r| !r.is_match(letter.reason())) {
            return Some("another reason");
        }
        let at = letter.message.timestamp().to_millis();
        if self.from_time.is_some_and(|t| at.is_none_or(|at| at < t.timestamp_millis()))
            || self.to_time.is_some_and(|t| at.is_none_or(|at| at >= t.timestamp_millis()))
        {
            return Some("outside the time range");
        }
        if letter.replays() >= self.max_replays {
            return Some("replayed --max-replays times");
        }
        None
    }
}

/// A dead letter as read from the DLQ.
struct DeadLetter<'a, 'm> {
    message: &'a BorrowedMessage<'m>,
}

impl DeadLetter<'_, '_> {
    fn header(&self, name: &str) -> Option<&str> {
        let headers = self.message.headers()?;
        headers.iter().find(|h| h.key == name).and_then(|h| std::str::from_utf8(h.value?).ok())
    }

    fn reason(&self) -> &str {
        self.header("rtds-error").unwrap_or("")
    }

    fn replays(&self) -> u32 {
        self.header(kafka::REPLAYS).and_then(|n| n.parse().ok()).unwrap_or(0)
    }
}

#[derive(Serialize)]
struct Summary {
    stage: &'static str,
    /// The stage whose dead letters were replayed, when the run chose one (`--stage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed_stage: Option<String>,
    group: String,
    dry_run: bool,
    /// Dead letters read.
    #[serde(rename = "in")]
    received: u64,
    /// Replayed (or, in a dry run, to be replayed).
    out: u64,
    /// Left in the DLQ: not selected, or replayed too often.
    filtered: u64,
    /// Replayed, by reason.
    reasons: BTreeMap<String, u64>,
    /// Left, by why.
    left: BTreeMap<&'static str, u64>,
    input_topic: String,
    /// Where the replayed records went, when that was one topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    output_topic: Option<String>,
    consumed: Ranges,
    produced: Ranges,
    seconds: f64,
}

pub async fn run(kafka: &ClientOpts, args: &ReplayArgs) -> Result<()> {
    validate::check_time_range(args.from_time, args.to_time)?;
    if args.sink.is_some() && args.stage.as_deref() == Some("transform") {
        return usage("--sink selects the load's dead letters: it does not go with --stage transform");
    }
    let started = Instant::now();
    let group = args.group();
    let (producer, deliveries) = kafka::producer(kafka, Compression::Lz4, kafka::LINGER_BATCH, None)?;
    let summary = tokio::task::block_in_place(|| -> Result<Summary> {
        let consumer = looker(kafka, &group)?;
        let members = groups(&consumer, kafka, Some(&group))?;
        if let Some(GroupState { members: n @ 1.., .. }) = members.get(&group) {
            return usage(format!("group {group} has {n} member(s): another replay of this selection is running"));
        }
        let marks = watermarks(&consumer, kafka, &args.dlq_topic)?;
        let partitions: Vec<i32> = marks.keys().copied().collect();
        let done = committed(&consumer, &args.dlq_topic, &partitions)?;
        // From the group's progress (or the DLQ's start) to its end now.
        let spans: BTreeMap<i32, Span> = marks
            .iter()
            .filter_map(|(p, (low, high))| {
                let first = done[p].unwrap_or(*low).max(*low);
                (first < *high).then(|| (*p, Span::new(first, high - 1, (high - first) as u64)))
            })
            .collect();
        let bar = crate::progress::bar(Some(spans.values().map(|s| s.count).sum()), "replay");
        let ack = Arc::new(BatchAck::default());
        let mut s = Summary {
            stage: "replay",
            replayed_stage: args.stage.clone(),
            group: group.clone(),
            dry_run: args.dry_run,
            received: 0,
            out: 0,
            filtered: 0,
            reasons: BTreeMap::new(),
            left: BTreeMap::new(),
            input_topic: args.dlq_topic.clone(),
            output_topic: None,
            consumed: Ranges::default(),
            produced: Ranges::default(),
            seconds: 0.0,
        };
        let mut targets = std::collections::BTreeSet::new();
        let mut failure = None;
        kafka::read_spans(kafka, &args.dlq_topic, &spans, std::time::Duration::from_secs(60), |m| {
            bar.inc(1);
            s.received += 1;
            s.consumed.add(&args.dlq_topic, m.partition(), m.offset());
            let letter = DeadLetter { message: m };
            if let Some(why) = args.passes_over(&letter) {
                s.filtered += 1;
                *s.left.entry(why).or_default() += 1;
                return;
            }
            let Some(target) = args.to.as_deref().or(letter.header("rtds-source-topic")) else {
                s.filtered += 1;
                *s.left.entry("no rtds-source-topic header (not a dead letter of rtds)").or_default() += 1;
                return;
            };
            s.out += 1;
            *s.reasons.entry(letter.reason().to_owned()).or_default() += 1;
            targets.insert(target.to_owned());
            if args.dry_run || failure.is_some() {
                return;
            }
            if let Err(e) = send_back(&producer, &ack, &letter, target, &args.dlq_topic) {
                failure = Some(e);
            }
        })?;
        bar.finish_and_clear();
        if let Some(e) = failure {
            return Err(e);
        }
        kafka::flush(&producer, std::time::Duration::from_secs(120))?;
        match ack.wait(std::time::Duration::from_secs(120)) {
            Status::Complete(_) => {}
            Status::Failed(why) => anyhow::bail!("a replayed record was not acknowledged: {why}; nothing committed"),
            Status::Waiting { .. } => anyhow::bail!("replayed records still unacknowledged; nothing committed"),
        }
        if !args.dry_run && !spans.is_empty() {
            let ends = spans.iter().map(|(p, span)| (*p, span.last + 1)).collect();
            commit_for_group(&consumer, &args.dlq_topic, &ends)
                .with_context(|| format!("committing the replay's progress under {group}"))?;
        }
        s.output_topic = (targets.len() == 1).then(|| targets.into_iter().next().unwrap_or_default());
        Ok(s)
    })?;
    let mut summary = summary;
    summary.produced = deliveries.produced();
    summary.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        replayed = summary.out,
        left = summary.filtered,
        dry_run = summary.dry_run,
        group = %summary.group,
        "replay finished: {}",
        summary.reasons.iter().map(|(r, n)| format!("{n} × {r}")).collect::<Vec<_>>().join("; ")
    );
    crate::summary::keep(&summary)
}

/// Produce `letter`'s record to `target` as it came, with the replay headers.
fn send_back(
    producer: &kafka::Producer,
    ack: &Arc<BatchAck>,
    letter: &DeadLetter<'_, '_>,
    target: &str,
    dlq: &str,
) -> Result<()> {
    let m = letter.message;
    let from = format!("{dlq}/{}/{}", m.partition(), m.offset());
    let replays = (letter.replays() + 1).to_string();
    let mut pairs: Vec<(&str, &[u8])> =
        vec![(kafka::REPLAYS, replays.as_bytes()), ("rtds-replayed-from", from.as_bytes())];
    if let Some(at) = letter.header(kafka::INGESTED_AT) {
        pairs.push((kafka::INGESTED_AT, at.as_bytes()));
    }
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(target).headers(kafka::headers(&pairs));
    if let Some(k) = m.key() {
        record = record.key(k);
    }
    if let Some(p) = m.payload() {
        record = record.payload(p);
    }
    kafka::send_blocking(producer, ack, record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReplayArgs,
    }

    fn args(argv: &[&str]) -> ReplayArgs {
        Cli::try_parse_from(std::iter::once("replay").chain(argv.iter().copied())).unwrap().args
    }

    #[test]
    fn each_selection_keeps_its_own_progress() {
        let a = args(&["--stage", "load", "--reason", "value too long"]);
        assert_eq!(a.group(), args(&["--stage", "load", "--reason", "value too long"]).group());
        assert_ne!(a.group(), args(&["--stage", "load"]).group());
        assert!(a.group().starts_with("rtds-replay-users_dlq-"), "{}", a.group());
        assert_eq!(args(&["--group", "mine"]).group(), "mine");
        assert!(Cli::try_parse_from(["replay", "--reason", "("]).is_err());
        assert!(Cli::try_parse_from(["replay", "--stage", "ingest"]).is_err());
    }
}
