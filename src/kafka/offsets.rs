//! Offsets as an operator sees them: a topic's partitions and their low and
//! high watermarks, where the records stamped at a time begin (Kafka's time
//! index), a consumer group's committed offsets and members, and committing
//! offsets for a group that has none. Blocking calls (each a request or two):
//! callers on the async runtime wrap them in `block_in_place`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::{ClientOpts, METADATA_TIMEOUT, client_config};
use crate::delivery::Span;

/// A consumer that reads offsets and metadata as `group` (never joining it:
/// it neither subscribes nor commits unless asked to).
pub fn looker(client: &ClientOpts, group: &str) -> Result<BaseConsumer> {
    client_config(client, &[("group.id", group), ("enable.auto.commit", "false")])?
        .create()
        .with_context(|| format!("creating a Kafka client for {}", client.brokers))
}

/// Per partition of `topic`, its low and high watermarks (the first offset it
/// still holds, the next it will write).
pub fn watermarks<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    client: &ClientOpts,
    topic: &str,
) -> Result<BTreeMap<i32, (i64, i64)>> {
    let md = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .with_context(|| format!("connecting to Kafka at {}", client.brokers))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        anyhow::bail!("topic {topic} does not exist on Kafka at {}", client.brokers);
    }
    partitions
        .into_iter()
        .map(|p| {
            let marks = consumer
                .fetch_watermarks(topic, p, METADATA_TIMEOUT)
                .with_context(|| format!("reading the offsets of {topic}/{p}"))?;
            Ok((p, marks))
        })
        .collect()
}

/// Per partition of `topic` (whose watermarks are `marks`), the offset of its
/// first record stamped at or after `at`; the high watermark where none is.
pub fn offsets_at(
    consumer: &BaseConsumer,
    topic: &str,
    marks: &BTreeMap<i32, (i64, i64)>,
    at: DateTime<Utc>,
) -> Result<BTreeMap<i32, i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in marks.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Offset(at.timestamp_millis()))
            .context("building the times to look up")?;
    }
    let found = consumer
        .offsets_for_times(tpl, METADATA_TIMEOUT)
        .with_context(|| format!("looking up the offsets of {topic} at {}", at.to_rfc3339()))?;
    marks
        .iter()
        .map(|(p, (_, high))| {
            let entry = found.find_partition(topic, *p).with_context(|| format!("no offset of {topic}/{p} found"))?;
            entry.error().with_context(|| format!("looking up {topic}/{p} at {}", at.to_rfc3339()))?;
            Ok((*p, if let Offset::Offset(o) = entry.offset() { o } else { *high }))
        })
        .collect()
}

/// The records of `topic` stamped in [`from`, `to`) per partition, as the
/// spans a bounded run reads (partitions with none left out): from the
/// beginning if `from` is not given, to the end there is now if `to` is not.
pub fn time_spans(
    client: &ClientOpts,
    topic: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<BTreeMap<i32, Span>> {
    let consumer = looker(client, &format!("rtds-times-{}", uuid::Uuid::new_v4()))?;
    let marks = watermarks(&consumer, client, topic)?;
    let firsts = match from {
        Some(t) => offsets_at(&consumer, topic, &marks, t)?,
        None => marks.iter().map(|(p, (low, _))| (*p, *low)).collect(),
    };
    let ends = match to {
        Some(t) => offsets_at(&consumer, topic, &marks, t)?,
        None => marks.iter().map(|(p, (_, high))| (*p, *high)).collect(),
    };
    Ok(firsts
        .into_iter()
        .filter_map(|(p, first)| {
            let end = ends[&p];
            (first < end).then(|| (p, Span::new(first, end - 1, (end - first) as u64)))
        })
        .collect())
}

/// A consumer group as the coordinator describes it: its state (`Empty`,
/// `Stable`, …) and how many members it has.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupState {
    pub state: String,
    pub members: usize,
}

/// The consumer groups the cluster knows, by name (`only`: that one).
pub fn groups(
    consumer: &BaseConsumer,
    client: &ClientOpts,
    only: Option<&str>,
) -> Result<BTreeMap<String, GroupState>> {
    let list = consumer
        .fetch_group_list(only, METADATA_TIMEOUT)
        .with_context(|| format!("listing the consumer groups on Kafka at {}", client.brokers))?;
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.protocol_type() == "consumer" || g.protocol_type().is_empty())
        .map(|g| (g.name().to_owned(), GroupState { state: g.state().to_owned(), members: g.members().len() }))
        .collect())
}

/// The offsets `consumer`'s group committed on `topic`'s `partitions` (`None`: none).
pub fn committed<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, Option<i64>>> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    let got = consumer.committed_offsets(tpl, METADATA_TIMEOUT).context("reading the committed offsets")?;
    Ok(partitions
        .iter()
        .map(|p| {
            let at = got.find_partition(topic, *p).and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
            (*p, at)
        })
        .collect())
}

/// Commit `offsets` on `topic` for `consumer`'s group, as a client outside it
/// (the group must have no members: the coordinator refuses it otherwise).
pub fn commit_for_group(consumer: &BaseConsumer, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).context("building the offsets to commit")?;
    }
    consumer.commit(&tpl, CommitMode::Sync).context("committing the offsets")
}
