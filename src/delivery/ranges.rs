//! Offset ranges: the spans of each topic partition a run read or wrote, and how a summary writes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The offsets of one topic partition a run read or wrote: `first..=last`,
/// `count` records among them (fewer than the span when other producers'
/// records or transaction markers lie between).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub first: i64,
    pub last: i64,
    pub count: u64,
    /// Made of spans that overlapped: some offsets were counted twice (a
    /// re-read after a rebalance, two summaries of one run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reread: bool,
}

impl Span {
    pub fn new(first: i64, last: i64, count: u64) -> Self {
        Self { first, last, count, reread: false }
    }
    /// Whether the two spans share an offset or `self` ends right before `o` begins.
    fn meets(&self, o: &Span) -> bool {
        self.first <= o.last.saturating_add(1) && o.first <= self.last.saturating_add(1)
    }
    fn overlaps(&self, o: &Span) -> bool {
        self.first <= o.last && o.first <= self.last
    }
    fn absorb(&mut self, o: &Span) {
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.count += o.count;
        self.reread |= o.reread;
    }
}

/// Spans by topic and partition (by topic first: adding an offset, once per
/// record, looks the topic up by `&str` without allocating). A partition holds
/// disjoint spans, in order: one reader's, or one producer's, offsets widen a
/// single span (`add`); spans of other batches, replicas or runs join it only
/// where they overlap or meet it (`add_span`), so that what nobody read stays a
/// hole between them, for reconcile to find.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ranges {
    spans: BTreeMap<String, BTreeMap<i32, Vec<Span>>>,
}

/// How a range is written in a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpan {
    pub topic: String,
    pub partition: i32,
    #[serde(flatten)]
    pub span: Span,
}

impl Ranges {
    fn partition(&mut self, topic: &str, partition: i32) -> &mut Vec<Span> {
        if !self.spans.contains_key(topic) {
            self.spans.insert(topic.to_owned(), BTreeMap::new());
        }
        let partitions = self.spans.get_mut(topic).expect("the topic's spans were just inserted");
        partitions.entry(partition).or_default()
    }

    /// Add one offset read or written by the same reader or producer as the
    /// partition's spans so far: it widens them into one.
    pub fn add(&mut self, topic: &str, partition: i32, offset: i64) {
        let spans = self.partition(topic, partition);
        match spans.as_mut_slice() {
            [only] => only.absorb(&Span::new(offset, offset, 1)),
            _ => {
                let mut all = Span::new(offset, offset, 1);
                for s in spans.drain(..) {
                    all.absorb(&s);
                }
                spans.push(all);
            }
        }
    }

    /// Add a span: joined with the spans it overlaps or meets, else kept apart.
    pub fn add_span(&mut self, topic: &str, partition: i32, span: Span) {
        let spans = self.partition(topic, partition);
        let mut joined = span;
        spans.retain(|s| {
            if !s.meets(&joined) {
                return true;
            }
            joined.reread |= s.overlaps(&joined);
            joined.absorb(s);
            false
        });
        let at = spans.partition_point(|s| s.first < joined.first);
        spans.insert(at, joined);
    }

    pub fn merge(&mut self, other: &Ranges) {
        for (t, partitions) in &other.spans {
            for (p, spans) in partitions {
                for s in spans {
                    self.add_span(t, *p, *s);
                }
            }
        }
    }

    /// Whether some offsets of `topic` were added twice (their records counted twice).
    pub fn reread(&self, topic: &str) -> bool {
        self.spans.get(topic).is_some_and(|ps| ps.values().flatten().any(|s| s.reread))
    }

    /// The spans of `topic`, by partition, each partition's as one: from its
    /// first offset to its last, every record counted.
    pub fn of(&self, topic: &str) -> BTreeMap<i32, Span> {
        let Some(partitions) = self.spans.get(topic) else { return BTreeMap::new() };
        partitions
            .iter()
            .filter_map(|(p, spans)| {
                let (first, rest) = spans.split_first()?;
                let mut all = *first;
                for s in rest {
                    all.absorb(s);
                }
                Some((*p, all))
            })
            .collect()
    }

    /// The disjoint spans of `topic`, by partition.
    pub fn spans(&self, topic: &str) -> BTreeMap<i32, Vec<Span>> {
        self.spans.get(topic).cloned().unwrap_or_default()
    }

    /// Records counted on `topic`.
    pub fn count(&self, topic: &str) -> u64 {
        self.spans.get(topic).map_or(0, |ps| ps.values().flatten().map(|s| s.count).sum())
    }

    /// Is `offset` of partition `p` of `topic` inside one of the spans?
    pub fn contains(&self, topic: &str, p: i32, offset: i64) -> bool {
        self.spans
            .get(topic)
            .and_then(|ps| ps.get(&p))
            .is_some_and(|spans| spans.iter().any(|s| s.first <= offset && offset <= s.last))
    }

    /// Start the span of partition `p` at `from` (the offset the reader had
    /// read up to before it, without a seek): the offsets between held no
    /// record for it (transaction markers, aborted records).
    pub fn extend_back(&mut self, topic: &str, p: i32, from: i64) {
        if let Some(s) = self.spans.get_mut(topic).and_then(|ps| ps.get_mut(&p)).and_then(|v| v.first_mut()) {
            s.first = s.first.min(from);
        }
    }

    pub fn list(&self) -> Vec<TopicSpan> {
        self.spans
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().flat_map(move |(p, spans)| {
                    spans.iter().map(move |span| TopicSpan { topic: topic.clone(), partition: *p, span: *span })
                })
            })
            .collect()
    }

    pub fn from_list(list: &[TopicSpan]) -> Self {
        let mut r = Ranges::default();
        for s in list {
            r.add_span(&s.topic, s.partition, s.span);
        }
        r
    }
}

impl Serialize for Ranges {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.list().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ranges {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Ranges::from_list(&Vec::<TopicSpan>::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_of_replicas_keep_a_lost_one_as_a_hole_and_mark_what_was_read_twice() {
        let span = |first, last| Span::new(first, last, (last - first + 1) as u64);
        let mut r = Ranges::default();
        r.add_span("t", 0, span(0, 99));
        r.add_span("t", 0, span(200, 299));
        assert_eq!(r.spans("t")[&0], [span(0, 99), span(200, 299)], "the middle replica's summary is missing");
        assert_eq!(r.of("t")[&0], Span::new(0, 299, 200), "the hull counts only what was read");
        assert!(!r.contains("t", 0, 150) && r.contains("t", 0, 250));
        r.add_span("t", 0, span(100, 199));
        assert_eq!(r.spans("t")[&0], [span(0, 299)], "spans that meet join");
        assert!(!r.reread("t"));
        r.add_span("t", 0, span(250, 260));
        assert!(r.reread("t"), "offsets 250..=260 counted twice");
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""reread":true"#), "{json}");
        assert_eq!(serde_json::from_str::<Ranges>(&json).unwrap(), r);
        let mut back = Ranges::default();
        back.add_span("t", 1, span(5, 9));
        back.extend_back("t", 1, 3);
        assert_eq!(back.spans("t")[&1], [Span::new(3, 9, 5)], "a reader's span starts where it went on from");
    }

    #[test]
    fn ranges_widen_and_count() {
        let mut r = Ranges::default();
        for o in [5, 3, 9] {
            r.add("t", 1, o);
        }
        r.add("u", 0, 0);
        assert_eq!(r.of("t")[&1], Span::new(3, 9, 3));
        assert_eq!(r.count("u"), 1);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"[{"topic":"t","partition":1,"first":3,"last":9,"count":3},{"topic":"u","partition":0,"first":0,"last":0,"count":1}]"#
        );
        assert_eq!(serde_json::from_str::<Ranges>(&json).unwrap(), r);
    }
}
