//! The checks `rtds reconcile` makes from the summaries alone: each stage
//! accounts for what it read, and each stage read everything the one before it
//! produced (offset ranges per partition).

use serde::{Deserialize, Serialize};

use crate::delivery::{Ranges, Span};

/// What reconcile needs of a stage's JSON summary line.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Summary {
    pub stage: String,
    #[serde(rename = "in", default)]
    pub received: u64,
    #[serde(default)]
    pub out: u64,
    #[serde(default)]
    pub dlq: u64,
    #[serde(default)]
    pub filtered: u64,
    /// Ingest: records the broker never acknowledged.
    #[serde(default)]
    pub failed: u64,
    /// Ingest's output topic.
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub input_topic: Option<String>,
    #[serde(default)]
    pub output_topic: Option<String>,
    #[serde(default)]
    pub dlq_topic: Option<String>,
    #[serde(default)]
    pub sink: Option<String>,
    #[serde(default)]
    pub store: Option<String>,
    #[serde(default)]
    pub consumed: Ranges,
    #[serde(default)]
    pub produced: Ranges,
    /// An aggregate's: records counted in a window, read again after a
    /// restart (decided before it), and dead-lettered as late while counted
    /// in a later window of theirs; its SQL and event time, and where its
    /// emitted windows stood (ms) at its start and end.
    #[serde(default)]
    pub counted: u64,
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub partly_late: u64,
    #[serde(default)]
    pub sql: Option<String>,
    #[serde(default)]
    pub event_time: Option<String>,
    #[serde(default)]
    pub emitted_before: Option<i64>,
    #[serde(default)]
    pub emitted_until: Option<i64>,
    /// A replay (`rtds replay --stage S`): the stage whose dead letters it sent back.
    #[serde(default)]
    pub replayed_stage: Option<String>,
}

impl Summary {
    /// The stage of the chain the summary stands for: its own, or for a
    /// replay the stage before the one it replayed to (it fed that stage's input).
    pub fn chain_stage(&self) -> &str {
        match (self.stage.as_str(), self.replayed_stage.as_deref()) {
            ("replay", Some("transform")) => "ingest",
            ("replay", Some("load")) => "transform",
            (stage, _) => stage,
        }
    }

    /// `ingest`, `transform`, or `load_<sink>`.
    pub fn name(&self) -> String {
        match &self.sink {
            Some(sink) => format!("load_{sink}"),
            None => self.stage.clone(),
        }
    }

    /// The topic the stage wrote its outputs to.
    pub fn output(&self) -> Option<&str> {
        self.topic.as_deref().or(self.output_topic.as_deref())
    }

    /// Add the summary of another replica of the same stage in the same run.
    pub fn merge(&mut self, o: &Summary) {
        self.received += o.received;
        self.out += o.out;
        self.dlq += o.dlq;
        self.filtered += o.filtered;
        self.failed += o.failed;
        self.consumed.merge(&o.consumed);
        self.produced.merge(&o.produced);
    }
}

/// One line of reconcile's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
    /// What is missing: the first ids or offset ranges.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    pub missing_count: u64,
}

/// How many missing items a report names.
pub const NAMED: usize = 20;

impl Check {
    pub fn passed(check: String, detail: String) -> Self {
        Self { check, ok: true, detail, missing: Vec::new(), missing_count: 0 }
    }
    pub fn failed(check: String, detail: String, missing: Vec<String>, missing_count: u64) -> Self {
        Self { check, ok: false, detail, missing: missing.into_iter().take(NAMED).collect(), missing_count }
    }
}

/// A stage accounts for every record it took in: in = out + dlq + filtered
/// (one rule for every stage), nothing failed, and the counts agree with where
/// its records went (`consumed`, `produced`), which are counted elsewhere.
pub fn accounts(s: &Summary) -> Check {
    let name = s.name();
    let mut wrong = Vec::new();
    // An aggregate's outputs are windows, not records: its records are counted, dead-lettered or skipped.
    let (accounted, rule) = if s.stage == "aggregate" {
        let accounted = (s.counted + s.dlq + s.skipped).saturating_sub(s.partly_late);
        (
            accounted,
            format!("counted {} + dlq {} - partly late {} + skipped {}", s.counted, s.dlq, s.partly_late, s.skipped),
        )
    } else {
        (s.out + s.dlq + s.filtered, format!("out {} + dlq {} + filtered {}", s.out, s.dlq, s.filtered))
    };
    if s.received != accounted {
        wrong.push(format!("in {} != {rule}", s.received));
    }
    if s.failed > 0 {
        wrong.push(format!("{} record(s) never acknowledged", s.failed));
    }
    if let Some(t) = &s.input_topic
        && s.consumed.count(t) != s.received
    {
        wrong.push(format!("in {} but {} record(s) read from {t}", s.received, s.consumed.count(t)));
    }
    if let Some(t) = s.output()
        && s.produced.count(t) != s.out
    {
        wrong.push(format!("out {} but {} record(s) delivered to {t}", s.out, s.produced.count(t)));
    }
    if let Some(t) = &s.dlq_topic
        && s.produced.count(t) != s.dlq
    {
        wrong.push(format!("dlq {} but {} record(s) delivered to {t}", s.dlq, s.produced.count(t)));
    }
    let check = format!("{name}: every record accounted for");
    if wrong.is_empty() {
        Check::passed(check, format!("in {} = {rule}", s.received))
    } else {
        Check::failed(check, wrong.join("; "), Vec::new(), 1)
    }
}

/// What `down` did not read of what `up` produced to `topic`: per
/// partition, the offsets of `up`'s spans outside every span `down` read.
/// A gap may hold only transaction markers or aborted records (between two
/// readers' spans); reconcile reads each gap back to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gaps {
    pub check: String,
    pub down: String,
    pub up: String,
    pub topic: String,
    pub gaps: Vec<(i32, Span)>,
    /// Records `up` produced, and in how many partitions.
    pub produced: u64,
    pub partitions: usize,
}

/// The link `up -> down` over `topic`: the offsets `up` produced there that `down` did not read.
pub fn gaps(up: &Summary, down: &Summary, topic: &str) -> Gaps {
    let produced = up.produced.spans(topic);
    let consumed = down.consumed.spans(topic);
    let mut gaps = Vec::new();
    for (p, spans) in &produced {
        let read = consumed.get(p).map_or(&[][..], Vec::as_slice);
        for span in spans {
            gaps.extend(uncovered(span, read).into_iter().map(|(first, last)| (*p, Span::new(first, last, 0))));
        }
    }
    Gaps {
        check: format!("{} -> {}: {topic}", up.name(), down.name()),
        down: down.name(),
        up: up.name(),
        topic: topic.to_owned(),
        gaps,
        produced: up.produced.count(topic),
        partitions: produced.len(),
    }
}

/// The parts of `span` outside every one of `read` (sorted, disjoint).
fn uncovered(span: &Span, read: &[Span]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut next = span.first;
    for r in read.iter().filter(|r| r.last >= span.first && r.first <= span.last) {
        if r.first > next {
            out.push((next, r.first - 1));
        }
        next = next.max(r.last + 1);
    }
    if next <= span.last {
        out.push((next, span.last));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(json: &str) -> Summary {
        serde_json::from_str(json).unwrap()
    }

    const INGEST: &str = r#"{"stage":"ingest","topic":"raw","in":5,"out":5,"dlq":0,"filtered":0,"failed":0,
        "produced":[{"topic":"raw","partition":0,"first":0,"last":2,"count":3},{"topic":"raw","partition":1,"first":10,"last":11,"count":2}]}"#;
    const TRANSFORM: &str = r#"{"stage":"transform","in":5,"out":3,"dlq":1,"filtered":1,
        "input_topic":"raw","output_topic":"created","dlq_topic":"dlq",
        "consumed":[{"topic":"raw","partition":0,"first":0,"last":2,"count":3},{"topic":"raw","partition":1,"first":10,"last":11,"count":2}],
        "produced":[{"topic":"created","partition":0,"first":7,"last":9,"count":3},{"topic":"dlq","partition":2,"first":0,"last":0,"count":1}]}"#;

    #[test]
    fn a_clean_chain_passes() {
        let (i, t) = (summary(INGEST), summary(TRANSFORM));
        assert!(accounts(&i).ok, "{:?}", accounts(&i));
        assert!(accounts(&t).ok, "{:?}", accounts(&t));
        assert_eq!(gaps(&i, &t, "raw").gaps, []);
    }

    #[test]
    fn a_count_that_does_not_add_up_fails() {
        let mut t = summary(TRANSFORM);
        t.dlq -= 1;
        let c = accounts(&t);
        assert!(!c.ok);
        assert!(c.detail.contains("in 5 != out 3 + dlq 0 + filtered 1"), "{}", c.detail);
        assert!(c.detail.contains("dlq 0 but 1 record(s) delivered to dlq"), "{}", c.detail);
        let mut t = summary(TRANSFORM);
        t.received += 1;
        t.filtered += 1;
        assert!(accounts(&t).detail.contains("in 6 but 5 record(s) read from raw"));
    }

    #[test]
    fn one_rule_for_every_stage() {
        let mut i = summary(INGEST);
        i.out -= 1;
        i.failed = 1;
        let c = accounts(&i);
        assert!(c.detail.contains("in 5 != out 4 + dlq 0 + filtered 0"), "{}", c.detail);
        assert!(c.detail.contains("1 record(s) never acknowledged"), "{}", c.detail);
        assert!(c.detail.contains("out 4 but 5 record(s) delivered to raw"), "{}", c.detail);
    }

    #[test]
    fn offsets_not_read_downstream_are_gaps_even_between_read_ends() {
        let i = summary(INGEST);
        let mut t = summary(TRANSFORM);
        let span = |partition, first, last| crate::delivery::TopicSpan {
            topic: "raw".into(),
            partition,
            span: Span::new(first, last, (last - first + 1) as u64),
        };
        t.consumed = Ranges::from_list(&[span(0, 1, 1)]);
        let g = gaps(&i, &t, "raw");
        assert_eq!(g.gaps, [(0, Span::new(0, 0, 0)), (0, Span::new(2, 2, 0)), (1, Span::new(10, 11, 0))]);
        // Both ends of partition 1 read, by two replicas; the middle one's summary lost.
        let mut i = summary(INGEST);
        i.produced = Ranges::from_list(&[span(1, 0, 299)]);
        t.consumed = Ranges::from_list(&[span(1, 0, 99), span(1, 200, 299)]);
        assert_eq!(gaps(&i, &t, "raw").gaps, [(1, Span::new(100, 199, 0))]);
    }
}
