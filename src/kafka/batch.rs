//! A consumed batch, packed: the bytes of every record (payload, key, ingest
//! stamp) in one buffer, and beside them where each record came from. A record
//! is copied once, from librdkafka's message into the buffer, instead of
//! allocated and freed apart per field and per record as rust-rdkafka's
//! `detach` does (bench/README.md, "Where the transform's CPU goes").

use std::collections::HashMap;
use std::ops::Range;

use anyhow::{Context, Result};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

use crate::delivery::Ranges;

/// The header ingest stamps each raw record with (RFC 3339), carried to the
/// clean record by the transform; the load measures end-to-end latency from it.
pub const INGESTED_AT: &str = "rtds-ingested-at";

/// The header `rtds replay` counts a record's replays in; a stage that
/// dead-letters the record again keeps it, so a replay knows when to stop.
pub const REPLAYS: &str = "rtds-replays";

/// One batch of records from one topic.
#[derive(Debug)]
pub struct Batch {
    topic: String,
    bytes: Vec<u8>,
    records: Vec<Meta>,
}

/// Where a record came from and where its bytes lie in the buffer.
#[derive(Debug, Clone)]
struct Meta {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    payload: Option<Range<usize>>,
    key: Option<Range<usize>>,
    ingested_at: Option<Range<usize>>,
    /// How often `rtds replay` sent the record back (`REPLAYS`).
    replays: u32,
}

/// One record of a batch, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct BatchRecord<'a> {
    batch: &'a Batch,
    meta: &'a Meta,
}

impl Batch {
    /// An empty batch with room for `records` records of `bytes` bytes in
    /// all: a source sizes each batch by the last, so that the buffers do not
    /// grow by copying (a batch is a few MB).
    pub fn with_room(topic: &str, (records, bytes): (usize, usize)) -> Self {
        let headroom = |n: usize| n + n / 8;
        Batch {
            topic: topic.to_owned(),
            bytes: Vec::with_capacity(headroom(bytes)),
            records: Vec::with_capacity(headroom(records)),
        }
    }

    /// How many records it holds, and how many bytes.
    pub fn size(&self) -> (usize, usize) {
        (self.records.len(), self.bytes.len())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Copy a record in (its topic is the batch's).
    pub fn push<M: Message>(&mut self, m: &M) {
        let (mut ingested_at, mut replays) = (None, 0);
        for h in m.headers().iter().flat_map(|h| h.iter()) {
            match h.key {
                INGESTED_AT => ingested_at = h.value,
                REPLAYS => replays = h.value.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()).unwrap_or(0),
                _ => {}
            }
        }
        let meta = Meta {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: match m.timestamp() {
                Timestamp::NotAvailable => None,
                t => t.to_millis(),
            },
            payload: m.payload().map(|b| self.keep(b)),
            key: m.key().map(|b| self.keep(b)),
            ingested_at: ingested_at.map(|b| self.keep(b)),
            replays,
        };
        self.records.push(meta);
    }

    fn keep(&mut self, b: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b);
        start..self.bytes.len()
    }

    /// Drop every record, keeping the topic (and the buffers' room).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }

    pub fn get(&self, i: usize) -> BatchRecord<'_> {
        BatchRecord { batch: self, meta: &self.records[i] }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = BatchRecord<'_>> {
        self.records.iter().map(|meta| BatchRecord { batch: self, meta })
    }

    /// Where the batch's records were: per partition, first and last offset.
    pub fn spans(&self) -> Ranges {
        let mut r = Ranges::default();
        for m in &self.records {
            r.add(&self.topic, m.partition, m.offset);
        }
        r
    }

    /// The offsets to commit for this batch: per partition, the last offset + 1.
    pub fn offsets(&self) -> Result<TopicPartitionList> {
        let mut next: HashMap<i32, i64> = HashMap::new();
        for m in &self.records {
            let e = next.entry(m.partition).or_insert(0);
            *e = (*e).max(m.offset + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next {
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                .context("building the offsets to commit")?;
        }
        Ok(tpl)
    }
}

impl<'a> BatchRecord<'a> {
    fn slice(&self, range: &Option<Range<usize>>) -> Option<&'a [u8]> {
        range.clone().map(|r| &self.batch.bytes[r])
    }

    pub fn topic(&self) -> &'a str {
        &self.batch.topic
    }

    pub fn partition(&self) -> i32 {
        self.meta.partition
    }

    pub fn offset(&self) -> i64 {
        self.meta.offset
    }

    /// The record's Kafka timestamp in ms since the epoch, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        self.meta.timestamp
    }

    pub fn payload(&self) -> Option<&'a [u8]> {
        self.slice(&self.meta.payload)
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.slice(&self.meta.key)
    }

    /// The record's `INGESTED_AT` header, if it has one.
    pub fn ingested_at(&self) -> Option<&'a [u8]> {
        self.slice(&self.meta.ingested_at)
    }

    /// How often the record was replayed from a DLQ (its `REPLAYS` header; 0 without).
    pub fn replays(&self) -> u32 {
        self.meta.replays
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    use super::*;

    fn message(offset: i64, payload: Option<&[u8]>, key: Option<&[u8]>, headers: &[(&str, &[u8])]) -> OwnedMessage {
        let h = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k, value: Some(*v) }));
        OwnedMessage::new(
            payload.map(<[u8]>::to_vec),
            key.map(<[u8]>::to_vec),
            "raw".into(),
            Timestamp::CreateTime(1_700_000_000_000 + offset),
            (offset % 2) as i32,
            offset,
            Some(h),
        )
    }

    #[test]
    fn each_record_reads_back_as_it_came() {
        let mut batch = Batch::with_room("raw", (2, 16));
        batch.push(&message(
            7,
            Some(b"{\"a\":1}"),
            Some(b"k7"),
            &[("other", b"x"), (INGESTED_AT, b"2026-12-01T00:00:00Z"), (REPLAYS, b"2")],
        ));
        batch.push(&message(8, None, None, &[("other", b"y")]));
        batch.push(&message(9, Some(b""), Some(b"k9"), &[]));
        assert_eq!(batch.size(), (3, 7 + 2 + 20 + 2));
        let r: Vec<_> =
            batch.iter().map(|r| (r.partition(), r.offset(), r.payload(), r.key(), r.ingested_at())).collect();
        assert_eq!(
            r,
            vec![
                (1, 7, Some(&b"{\"a\":1}"[..]), Some(&b"k7"[..]), Some(&b"2026-12-01T00:00:00Z"[..])),
                (0, 8, None, None, None),
                (1, 9, Some(&b""[..]), Some(&b"k9"[..]), None),
            ]
        );
        assert_eq!(batch.get(1).timestamp(), Some(1_700_000_000_008));
        assert_eq!((batch.get(0).replays(), batch.get(1).replays()), (2, 0));
        assert_eq!(batch.get(2).topic(), "raw");
        let spans = batch.spans().of("raw");
        assert_eq!((spans[&0].first, spans[&0].last, spans[&1].first, spans[&1].last), (8, 8, 7, 9));
        batch.clear();
        assert!(batch.is_empty() && batch.topic() == "raw");
    }
}
