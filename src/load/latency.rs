//! End-to-end latency: from the `rtds-ingested-at` header that ingest stamps
//! (and transform carries over) to the moment the store acknowledged the row.
//! Kept in an HDR histogram (1 ms resolution, 3 significant digits) for the
//! summary's percentiles, and as a Prometheus histogram in `--follow`.

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;

pub struct EndToEnd {
    ms: Histogram<u64>,
    metrics: bool,
}

/// The summary's `latency_ms`: percentiles over every row written this run.
#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub rows: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl EndToEnd {
    pub fn new(metrics: bool) -> Self {
        // 1 ms to 1 hour at 3 significant digits; an older record counts as an hour.
        let ms = Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid histogram bounds");
        Self { ms, metrics }
    }

    /// One written row stamped `ingested_at` (RFC 3339); rows without a
    /// readable stamp (written by another producer) are not counted.
    pub fn record(&mut self, ingested_at: Option<&[u8]>, acked_at: DateTime<Utc>) {
        let Some(at) =
            ingested_at.and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        else {
            return;
        };
        let ms = (acked_at - at.with_timezone(&Utc)).num_milliseconds().max(0) as u64;
        self.ms.saturating_record(ms);
        if self.metrics {
            metrics::histogram!("rtds_end_to_end_seconds").record(ms as f64 / 1000.0);
        }
    }

    pub fn percentiles(&self) -> Option<Percentiles> {
        (!self.ms.is_empty()).then(|| Percentiles {
            rows: self.ms.len(),
            p50: self.ms.value_at_quantile(0.50),
            p95: self.ms.value_at_quantile(0.95),
            p99: self.ms.value_at_quantile(0.99),
            max: self.ms.max(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_ingest_stamp() {
        let acked: DateTime<Utc> = "2026-11-25T12:00:01.000Z".parse().unwrap();
        let mut e2e = EndToEnd::new(false);
        assert_eq!(e2e.percentiles(), None);
        for ms in 1..=100 {
            let at = acked - chrono::Duration::milliseconds(ms);
            e2e.record(Some(at.to_rfc3339().as_bytes()), acked);
        }
        // Unreadable or missing stamps are skipped, not counted as zero.
        e2e.record(Some(b"yesterday"), acked);
        e2e.record(None, acked);
        let p = e2e.percentiles().unwrap();
        assert_eq!((p.rows, p.p50, p.p95, p.p99, p.max), (100, 50, 95, 99, 100));
        // A record from long ago counts as an hour (the histogram's top), not as its first bucket.
        e2e.record(Some(b"2026-11-24T00:00:00Z"), acked);
        let max = e2e.percentiles().unwrap().max;
        assert!((3_600_000..3_700_000).contains(&max), "max {max}");
    }
}
