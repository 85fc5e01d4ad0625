//! `rtds ingest`: users from the randomuser.me API or the seeded generator,
//! produced as-is to Kafka keyed by `login.uuid`. Exits only after every
//! delivery report has arrived.

mod avro;
mod options;

pub use options::{IngestArgs, UserSource};

mod randomuser;

use std::borrow::Cow;

use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::producer::BaseRecord;
use serde::Serialize;
use tokio::sync::watch;

use crate::error::usage;
use crate::generate::Generator;
use crate::kafka;
use crate::kafka::ClientOpts;
use crate::metrics::StageMetrics;
use crate::registry::RegistryOpts;

/// Records the generator writes between two checks of the bounds and signals.
const GENERATE_CHUNK: u64 = 1000;
/// How long the producer may take to deliver what is queued at the end.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Serialize)]
struct Summary<'a> {
    stage: &'static str,
    source: &'static str,
    topic: &'a str,
    format: crate::avro::Format,
    /// The registry id of the schema the records were written with (Avro only).
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_id: Option<u32>,
    #[serde(rename = "in")]
    received: u64,
    out: u64,
    /// The shape of every stage's summary (in = out + dlq + filtered); ingest
    /// sends nothing to the DLQ and filters nothing.
    dlq: u64,
    filtered: u64,
    /// Records the broker never acknowledged (the run then fails).
    failed: u64,
    retried: u64,
    bytes: u64,
    seconds: f64,
    records_per_s: f64,
    /// Where the delivered records landed: what the next stage must read.
    produced: crate::delivery::Ranges,
    /// The Kafka requests the producer sent, when librdkafka's statistics are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    kafka_requests: Option<std::collections::BTreeMap<&'static str, kafka::ClientRequests>>,
}

/// Where records come from.
enum Feed {
    Generate { generator: Generator, next: u64 },
    Api(randomuser::RandomUser),
}

pub async fn run(
    kafka: &ClientOpts,
    registry: &RegistryOpts,
    metrics_addr: Option<std::net::SocketAddr>,
    args: &IngestArgs,
) -> Result<()> {
    if args.count.is_none() && args.duration.is_none() && !args.follow {
        return usage("rtds ingest needs a bound: --count N, --duration D, or --follow to run until stopped");
    }
    let (source_name, mut feed) = match args.source {
        UserSource::Generate => ("generate", {
            let generator =
                args.update_ids.map_or_else(|| Generator::new(args.seed), |n| Generator::updating(args.seed, n));
            Feed::Generate { generator, next: 0 }
        }),
        UserSource::Randomuser => (
            "randomuser",
            Feed::Api(randomuser::RandomUser::new(randomuser::Options {
                url: args.url.clone(),
                api_seed: args.api_seed.clone().filter(|s| !s.is_empty()),
                nat: args.nat.clone().filter(|s| !s.is_empty()),
                timeout: args.http_timeout,
                retries: args.retries,
                retry_base: args.retry_base,
            })?),
        ),
    };
    let avro = match args.format {
        crate::avro::Format::Avro => Some(avro::AvroUsers::new(registry, &args.topic).await?),
        crate::avro::Format::Json => None,
    };
    kafka::ensure_topics(kafka, &[&args.topic], &args.topics).await?;
    // Paced, the pacer's windows do the waiting and a window's records go at once.
    let linger = if args.rate.is_some() { kafka::LINGER_BATCH } else { args.linger };
    let (producer, deliveries) = kafka::producer(kafka, args.compression, linger, None)?;
    let metrics = StageMetrics::new("ingest", metrics_addr)?;
    let mut shutdown = crate::shutdown::listen();
    let bar = crate::progress::bar(args.count, "ingest");
    let start = Instant::now();
    let mut out = Output {
        producer: &producer,
        ack: Default::default(),
        topic: &args.topic,
        source: source_name,
        pacer: Pacer {
            rate: args.rate,
            start,
            sent: 0,
            deadline: args.duration.map(|d| start + d),
            window: args.linger,
        },
        bytes: 0,
        avro,
    };

    let fed: Result<()> = async {
        let mut delivered = 0;
        loop {
            let remaining = args.count.map_or(u64::MAX, |c| c.saturating_sub(out.pacer.sent));
            if remaining == 0 || *shutdown.borrow() || out.pacer.over() {
                return Ok(());
            }
            let (t, sent) = (Instant::now(), out.pacer.sent);
            match &mut feed {
                Feed::Generate { generator, next } => {
                    // With a rate, about a tenth of a second's worth at a time,
                    // so signals are noticed promptly.
                    let per_step = args.rate.map_or(u64::MAX, |r| (r / 10.0).ceil() as u64).max(1);
                    let n = remaining.min(GENERATE_CHUNK).min(per_step);
                    *next += out.generated(generator, *next, n, &mut shutdown).await?;
                }
                Feed::Api(api) => {
                    // One request for what the next second needs (the API serves up to 5,000).
                    let per_second = args.rate.map_or(u64::MAX, |r| r.ceil() as u64).max(1);
                    let n = remaining.min(u64::from(args.page_size)).min(per_second) as u32;
                    let users = tokio::select! {
                        users = api.fetch(n) => users?,
                        _ = shutdown.changed() => return Ok(()),
                    };
                    if users.is_empty() {
                        anyhow::bail!("{} returned no users for results={n}", args.url);
                    }
                    if users.len() > n as usize {
                        tracing::debug!(
                            asked = n,
                            got = users.len(),
                            "the API sent more users than asked; the rest is not taken"
                        );
                    }
                    // Never more than --count: a page larger than asked is cut there.
                    let page = &users[..users.len().min(n as usize)];
                    let payloads: Vec<&[u8]> = page.iter().map(|u| u.json.get().as_bytes()).collect();
                    let payloads = out.encoded(&payloads)?;
                    let had = Instant::now();
                    for (u, payload) in page.iter().zip(&payloads) {
                        if !out.send(u.key.as_deref().map(str::as_bytes), payload, had, &mut shutdown).await? {
                            break;
                        }
                    }
                }
            }
            let now_delivered = deliveries.delivered();
            metrics.batch(out.pacer.sent - sent, now_delivered - delivered, 0, t.elapsed());
            delivered = now_delivered;
            bar.set_position(out.pacer.sent);
        }
    }
    .await;

    bar.finish_and_clear();
    let flushed = kafka::flush(&producer, FLUSH_TIMEOUT);
    let seconds = start.elapsed().as_secs_f64();
    let received = out.pacer.sent;
    let summary = Summary {
        stage: "ingest",
        source: source_name,
        topic: &args.topic,
        format: args.format,
        schema_id: out.avro.as_ref().map(|a| a.schema_id),
        received,
        out: deliveries.delivered(),
        dlq: 0,
        filtered: 0,
        failed: deliveries.failed(),
        retried: match &feed {
            Feed::Api(api) => api.retried,
            Feed::Generate { .. } => 0,
        },
        bytes: out.bytes,
        seconds,
        records_per_s: if seconds > 0.0 { received as f64 / seconds } else { 0.0 },
        produced: deliveries.produced(),
        kafka_requests: kafka::requests_sent(),
    };
    crate::summary::keep(&summary)?;
    fed?;
    flushed?;
    if summary.failed > 0 {
        anyhow::bail!(
            "{} of {received} record(s) were not delivered to {}: {}",
            summary.failed,
            args.topic,
            deliveries.first_error().unwrap_or_default()
        );
    }
    tracing::info!(records = received, seconds, "ingest finished");
    Ok(())
}

/// The producing side: headers, pacing, byte count.
struct Output<'a> {
    producer: &'a kafka::Producer,
    /// Ingest commits nothing: one ack group for the whole run.
    ack: std::sync::Arc<crate::delivery::BatchAck>,
    topic: &'a str,
    source: &'static str,
    pacer: Pacer,
    bytes: u64,
    /// With `--format avro`, what writes the users as Avro.
    avro: Option<avro::AvroUsers>,
}

impl Output<'_> {
    /// Send one record (in hand since `had`) when its time comes; false (and
    /// nothing sent) once the run's `--duration` is over.
    async fn send(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
        had: Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool> {
        let Some(came) = self.pacer.wait(had, shutdown).await else {
            return Ok(false);
        };
        let stamp = chrono::Utc::now() - Instant::now().saturating_duration_since(came);
        let stamp = stamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let headers =
            kafka::headers(&[("rtds-source", self.source.as_bytes()), (kafka::INGESTED_AT, stamp.as_bytes())]);
        let mut record = BaseRecord::to(self.topic).payload(payload).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        kafka::send(self.producer, &self.ack, record).await?;
        self.bytes += payload.len() as u64;
        Ok(true)
    }

    /// The payloads of `users` in the run's format.
    fn encoded<'u>(&mut self, users: &[&'u [u8]]) -> Result<Vec<Cow<'u, [u8]>>> {
        match &mut self.avro {
            Some(avro) => avro.encode(users),
            None => Ok(users.iter().map(|u| Cow::Borrowed(*u)).collect()),
        }
    }

    /// Generate and send records `first .. first + n`; how many were sent.
    async fn generated(
        &mut self,
        generator: &Generator,
        first: u64,
        n: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<u64> {
        // One buffer for the chunk, each record a slice of it.
        let (mut buf, mut bounds) = (Vec::with_capacity(1400 * n as usize), Vec::with_capacity(n as usize));
        for i in first..first + n {
            let start = buf.len();
            let key = generator.write_record(i, &mut buf);
            bounds.push((key, start, buf.len()));
        }
        let users: Vec<&[u8]> = bounds.iter().map(|&(_, start, end)| &buf[start..end]).collect();
        let payloads = self.encoded(&users)?;
        let had = Instant::now();
        for (sent, ((key, ..), payload)) in bounds.iter().zip(&payloads).enumerate() {
            if !self.send(Some(key), payload, had, shutdown).await? {
                return Ok(sent as u64);
            }
        }
        Ok(n)
    }
}

/// Holds the send rate to `--rate` records per second, if set, and ends the
/// run at `--duration`: at a rate, exactly rate × duration records. Paced
/// records go in windows of `window`: those due in one are sent together at
/// its end, every partition's at once, so the broker gets them in one moment
/// and each stage downstream reads them as one batch (a partition's own
/// linger would send each partition's at its own time: bench/README.md, "One
/// batch a window"). One wake-up a window, not one a record. The rate over
/// any second is unchanged.
struct Pacer {
    rate: Option<f64>,
    start: Instant,
    sent: u64,
    deadline: Option<Instant>,
    window: Duration,
}

impl Pacer {
    /// When the next record is due (now, without a rate).
    fn due(&self) -> Instant {
        match self.rate {
            Some(rate) => self.start + Duration::from_secs_f64(self.sent as f64 / rate),
            None => Instant::now(),
        }
    }

    /// The run's time is up: the next record would be due at or after the deadline.
    fn over(&self) -> bool {
        self.deadline.is_some_and(|d| self.due() >= d)
    }

    /// When the window that `due` falls in ends.
    fn window_end(&self, due: Instant) -> Instant {
        let w = self.window.as_secs_f64();
        if w == 0.0 {
            return due;
        }
        self.start + Duration::from_secs_f64(((due - self.start).as_secs_f64() / w).ceil() * w)
    }

    /// Wait until the window of the next record (in hand since `had`) ends
    /// and count it; when it came (its due time, or `had` if the source gave
    /// it late), or `None` if it would be due after the deadline (it is not
    /// sent). Its stamp is when it came, so its wait in the window is part of
    /// its latency.
    async fn wait(&mut self, had: Instant, shutdown: &mut watch::Receiver<bool>) -> Option<Instant> {
        if self.over() {
            return None;
        }
        let due = self.due();
        if self.rate.is_some() {
            let end = self.window_end(due);
            if end > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(end.into()) => {}
                    // A signal ends the wait; the record is still sent, so
                    // nothing taken from the source is dropped.
                    _ = shutdown.changed() => {}
                }
            }
        }
        self.sent += 1;
        Some(due.max(had))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(rate: f64, window_ms: u64) -> Pacer {
        Pacer {
            rate: Some(rate),
            start: Instant::now(),
            sent: 0,
            deadline: None,
            window: Duration::from_millis(window_ms),
        }
    }

    #[test]
    fn a_window_ends_at_the_next_multiple_of_its_length() {
        let p = pacer(100.0, 50);
        let at = |ms: u64| p.start + Duration::from_millis(ms);
        assert_eq!(p.window_end(at(0)), at(0));
        assert_eq!(p.window_end(at(1)), at(50));
        assert_eq!(p.window_end(at(50)), at(50));
        assert_eq!(p.window_end(at(51)), at(100));
        assert_eq!(Pacer { window: Duration::ZERO, ..pacer(100.0, 0) }.window_end(at(7)), at(7));
    }

    #[tokio::test]
    async fn a_window_of_records_goes_at_its_end_each_stamped_when_it_came_due() {
        // 100 a second, 50 ms windows: records 1..=5 are due 10..50 ms in and all go at 50 ms.
        let mut p = pacer(100.0, 50);
        let (_tx, mut shutdown) = watch::channel(false);
        let had = p.start;
        let mut came = Vec::new();
        for _ in 0..6 {
            came.push(p.wait(had, &mut shutdown).await.unwrap());
        }
        assert!(p.start.elapsed() >= Duration::from_millis(50));
        let due: Vec<Instant> = (0..6).map(|i| p.start + Duration::from_millis(10 * i)).collect();
        for (c, d) in came.iter().zip(&due) {
            assert!(c.saturating_duration_since(*d) < Duration::from_micros(10), "{c:?} against {d:?}");
        }
        // Given late by the source (record 6 is due at 60 ms), a record came when the source gave it.
        tokio::time::sleep_until((p.start + Duration::from_millis(70)).into()).await;
        let late = Instant::now();
        assert_eq!(p.wait(late, &mut shutdown).await, Some(late));
        assert_eq!(p.sent, 7);
    }
}
