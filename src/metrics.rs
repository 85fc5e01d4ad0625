//! Prometheus metrics on `--metrics-addr` (text format on /metrics), for
//! long-running `--follow` stages: records in/out/DLQ, batch latency, lag.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;

pub struct StageMetrics {
    stage: &'static str,
    enabled: bool,
}

impl StageMetrics {
    /// Start the exporter if `addr` is set; otherwise recording is a no-op.
    pub fn new(stage: &'static str, addr: Option<SocketAddr>) -> Result<Self> {
        if let Some(addr) = addr {
            PrometheusBuilder::new()
                .with_http_listener(addr)
                .set_buckets(&[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .context("configuring the metrics exporter")?
                .install()
                .with_context(|| format!("serving metrics on {addr}"))?;
            tracing::info!(%addr, "metrics on http://{addr}/metrics");
        }
        Ok(Self { stage, enabled: addr.is_some() })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Record one committed batch.
    pub fn batch(&self, received: u64, out: u64, dlq: u64, took: Duration) {
        if !self.enabled {
            return;
        }
        let stage = self.stage;
        counter!("rtds_records_in_total", "stage" => stage).increment(received);
        counter!("rtds_records_out_total", "stage" => stage).increment(out);
        counter!("rtds_records_dlq_total", "stage" => stage).increment(dlq);
        histogram!("rtds_batch_seconds", "stage" => stage).record(took.as_secs_f64());
    }

    /// The consumer-lag gauge of this stage.
    pub fn lag_gauge(&self) -> metrics::Gauge {
        gauge!("rtds_consumer_lag", "stage" => self.stage)
    }
}
