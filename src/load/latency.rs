//! End-to-end latency: from the `rtds-ingested-at` header that ingest stamps
//! (and transform carries over) to the moment the store acknowledged the row.
//! Kept in an HDR histogram (1 ms resolution, 3 significant digits) for the
//! summary's percentiles, and as a Prometheus histogram in `--follow`.
//!
//! The same time is also split into hops, so that a slow path says where it is
//! slow: ingest's stamp → the transform produced the clean row (the clean
//! record's Kafka timestamp), → the load's batch closed, → the store's
//! acknowledgement.

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;

/// The hops of a row's way, in order; each ends where the next begins.
const HOPS: [&str; 3] = ["ingest_to_transform", "transform_to_load", "load_to_store"];

pub struct EndToEnd {
    ms: Histogram<u64>,
    hops: [Histogram<u64>; HOPS.len()],
    metrics: bool,
    /// The last ingest stamp read and its time: rows one after another mostly
    /// share one (`row::Stamps`), read once instead of once a row.
    last: (Vec<u8>, Option<DateTime<Utc>>),
}

/// When one written row passed each point of its way.
pub struct Stamps<'a> {
    /// Ingest's `rtds-ingested-at` header (RFC 3339), if the row has one.
    pub ingested_at: Option<&'a [u8]>,
    /// The clean record's Kafka timestamp (ms since the epoch): when the
    /// transform produced it (CreateTime), or the broker appended it.
    pub transformed_at: Option<i64>,
    /// When the load's batch holding the row was closed.
    pub loaded_at: DateTime<Utc>,
    /// When the store acknowledged the row.
    pub acked_at: DateTime<Utc>,
}

/// The summary's `latency_ms`: percentiles over every row written this run.
#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub rows: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
    /// Per hop (`HOPS`), p50 and p99, over the rows whose stamps are readable.
    pub hops: std::collections::BTreeMap<&'static str, Hop>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Hop {
    pub p50: u64,
    pub p99: u64,
}

fn histogram() -> Histogram<u64> {
    // 1 ms to 1 hour at 3 significant digits; an older record counts as an hour.
    Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid histogram bounds")
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    (to - from).num_milliseconds().max(0) as u64
}

impl EndToEnd {
    pub fn new(metrics: bool) -> Self {
        Self { ms: histogram(), hops: HOPS.map(|_| histogram()), metrics, last: (Vec::new(), None) }
    }

    /// One written row; rows without a readable ingest stamp (written by
    /// another producer) are not counted.
    pub fn record(&mut self, s: &Stamps<'_>) {
        let Some(at) = s.ingested_at.and_then(|stamp| self.ingested(stamp)) else {
            return;
        };
        let ms = millis(at, s.acked_at);
        self.ms.saturating_record(ms);
        if self.metrics {
            metrics::histogram!("rtds_end_to_end_seconds").record(ms as f64 / 1000.0);
        }
        let Some(transformed) = s.transformed_at.and_then(DateTime::from_timestamp_millis) else {
            return;
        };
        let hops = [millis(at, transformed), millis(transformed, s.loaded_at), millis(s.loaded_at, s.acked_at)];
        for ((h, ms), name) in self.hops.iter_mut().zip(hops).zip(HOPS) {
            h.saturating_record(ms);
            if self.metrics {
                metrics::histogram!("rtds_end_to_end_hop_seconds", "hop" => name).record(ms as f64 / 1000.0);
            }
        }
    }

    /// The time of an ingest stamp (RFC 3339), if it is one.
    fn ingested(&mut self, stamp: &[u8]) -> Option<DateTime<Utc>> {
        if self.last.0 != stamp {
            let at = std::str::from_utf8(stamp).ok().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            self.last = (stamp.to_vec(), at.map(|t| t.with_timezone(&Utc)));
        }
        self.last.1
    }

    pub fn percentiles(&self) -> Option<Percentiles> {
        let hops = HOPS
            .iter()
            .zip(&self.hops)
            .filter(|(_, h)| !h.is_empty())
            .map(|(name, h)| (*name, Hop { p50: h.value_at_quantile(0.50), p99: h.value_at_quantile(0.99) }))
            .collect();
        (!self.ms.is_empty()).then(|| Percentiles {
            rows: self.ms.len(),
            p50: self.ms.value_at_quantile(0.50),
            p95: self.ms.value_at_quantile(0.95),
            p99: self.ms.value_at_quantile(0.99),
            max: self.ms.max(),
            hops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// A row with only its ingest stamp, acknowledged at `acked`.
    fn ingested(stamp: Option<&[u8]>, acked: DateTime<Utc>) -> Stamps<'_> {
        Stamps { ingested_at: stamp, transformed_at: None, loaded_at: acked, acked_at: acked }
    }

    #[test]
    fn percentiles_come_from_the_ingest_stamp() {
        let acked = at("2026-11-25T12:00:01.000Z");
        let mut e2e = EndToEnd::new(false);
        assert_eq!(e2e.percentiles(), None);
        for ms in 1..=100 {
            let stamp = (acked - chrono::Duration::milliseconds(ms)).to_rfc3339();
            e2e.record(&ingested(Some(stamp.as_bytes()), acked));
        }
        // Unreadable or missing stamps are skipped, not counted as zero.
        e2e.record(&ingested(Some(b"yesterday"), acked));
        e2e.record(&ingested(None, acked));
        let p = e2e.percentiles().unwrap();
        assert_eq!((p.rows, p.p50, p.p95, p.p99, p.max), (100, 50, 95, 99, 100));
        // Without the clean record's timestamp there are no hops.
        assert!(p.hops.is_empty(), "{:?}", p.hops);
        // A record from long ago counts as an hour (the histogram's top), not as its first bucket.
        e2e.record(&ingested(Some(b"2026-11-24T00:00:00Z"), acked));
        let max = e2e.percentiles().unwrap().max;
        assert!((3_600_000..3_700_000).contains(&max), "max {max}");
    }

    #[test]
    fn rows_that_share_a_stamp_each_count_with_its_time() {
        let acked = at("2026-11-25T12:00:01.000Z");
        let mut e2e = EndToEnd::new(false);
        let (a, b) = (b"2026-11-25T12:00:00.990Z", b"2026-11-25T12:00:00.900Z");
        let stamps: [&[u8]; 6] = [a, a, b"yesterday", a, b, b];
        for stamp in stamps {
            e2e.record(&ingested(Some(stamp), acked));
        }
        let p = e2e.percentiles().unwrap();
        assert_eq!((p.rows, p.p50, p.max), (5, 10, 100), "the unreadable stamp skipped, each stamp its own time");
    }

    #[test]
    fn hops_split_the_way_and_add_up_to_it() {
        let mut e2e = EndToEnd::new(false);
        // 10 ms to the transform, 20 ms to the load's batch, 30 ms to the store.
        let transformed = at("2026-11-25T12:00:00.010Z");
        e2e.record(&Stamps {
            ingested_at: Some(b"2026-11-25T12:00:00.000Z"),
            transformed_at: Some(transformed.timestamp_millis()),
            loaded_at: at("2026-11-25T12:00:00.030Z"),
            acked_at: at("2026-11-25T12:00:00.060Z"),
        });
        let p = e2e.percentiles().unwrap();
        assert_eq!(p.p50, 60);
        let hop = |name: &str| (p.hops[name].p50, p.hops[name].p99);
        assert_eq!(
            (hop("ingest_to_transform"), hop("transform_to_load"), hop("load_to_store")),
            ((10, 10), (20, 20), (30, 30))
        );
    }
}
