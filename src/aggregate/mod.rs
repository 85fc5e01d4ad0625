//! `rtds aggregate`: raw users -> counts, sums, averages by event-time window
//! (tumbling or hopping), DataFusion's partial and final aggregation over the
//! stream. A watermark trails the largest event time seen by the allowed
//! lateness; a window is emitted once it passes the window's end, and a record
//! of a window already emitted goes to the DLQ as late. A bounded run takes the
//! end of its input as the end of time: it emits every window it holds, then
//! commits its offsets, after every output is acknowledged. A run that stops
//! before that commits nothing: the next reads the same records again and
//! re-emits the same windows, keyed by window and group (each overwrites itself).

mod event_time;
mod options;
mod output;
pub mod state;
pub mod window;

pub use options::AggregateArgs;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use rdkafka::TopicPartitionList;
use rdkafka::producer::BaseRecord;

use crate::delivery::{self, BatchAck, Counts, Ranges};
use crate::error::usage;
use crate::kafka::{self, Batch, ClientOpts, Compression, Producer, Profile, Reading, Source};
use crate::raw::decode::{RawDecoder, raw_schema};
use crate::raw::reader::RawReader;
use crate::registry::{Registry, RegistryOpts};
use crate::stage;

const STAGE: &str = "aggregate";
/// As the transform's: raw records are large.
pub const PROFILE: Profile = Profile { stage: STAGE, batch_size: 1000, prefetch_mb: 2 };

#[derive(serde::Serialize)]
struct Summary {
    #[serde(flatten)]
    totals: stage::Totals,
    /// Windows emitted (rows out are windows times groups).
    windows: u64,
    /// Records of a window already emitted, sent to the DLQ.
    late: u64,
    /// The state's largest size: rows (a window and group each) and bytes.
    state_rows: usize,
    state_bytes: usize,
}

pub async fn run(kafka: &ClientOpts, registry: &RegistryOpts, args: &AggregateArgs) -> Result<()> {
    kafka::check_consumer_settings(kafka)?;
    let sql = match std::fs::read_to_string(&args.sql) {
        Ok(t) => t,
        Err(e) => return usage(format!("cannot read --sql file {}: {e}", args.sql.display())),
    };
    let windowed = window::take_window(&sql).await?;
    let schema = window::windowed_schema(&raw_schema());
    let mut aggregation = state::Aggregation::plan(&windowed.sql, schema.clone()).await?;
    let keys = output::Keys::of(&aggregation.output_schema(), &windowed.group_by)?;
    let mut event_time = event_time::EventTime::plan(args.event_time.as_deref()).await?;
    let decoder = RawDecoder::reading(|path| aggregation.reads().leaf(path) || event_time.reads(path));
    let mut decoder = RawReader::new(decoder, Registry::new(registry)?)?;
    let reading = stage::reading(kafka, &args.consume, "rtds-aggregate", &args.input_topic)?;
    if matches!(reading, Reading::Follow { .. }) {
        return usage("rtds aggregate runs bounded for now: --follow is not supported yet");
    }
    kafka::ensure_topics(kafka, &[&args.input_topic, &args.output_topic, &args.consume.dlq_topic], &args.topics)
        .await?;
    let (producer, deliveries) = kafka::producer(kafka, Compression::Lz4, kafka::LINGER_BATCH, None)?;
    let mut source = Source::open(kafka, &PROFILE, &args.input_topic, &reading, args.consume.end_wait).await?;
    let lateness = i64::try_from(args.allowed_lateness.as_millis()).unwrap_or(i64::MAX);
    let mut run = Run {
        producer: &producer,
        ack: Arc::new(BatchAck::default()),
        args,
        keys: &keys,
        windows: windowed.windows,
        watermark: None,
        emitted_until: None,
        summary: Summary {
            totals: stage::Totals { stage: STAGE, dlq_topic: args.consume.dlq_topic.clone(), ..Default::default() },
            windows: 0,
            late: 0,
            state_rows: 0,
            state_bytes: 0,
        },
    };
    let start = Instant::now();
    let batch_size = args.consume.batch_size.map_or(PROFILE.batch_size, |n| n as usize);
    let mut shutdown = crate::shutdown::listen();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let result: Result<()> = async {
        while let Some(batch) = source.next_batch(batch_size, args.consume.max_wait, &mut shutdown).await? {
            if batch.is_empty() {
                continue;
            }
            run.summary.totals.received += batch.len() as u64;
            run.summary.totals.batches += 1;
            run.summary.totals.consumed.merge(&source.spans(&batch));
            for e in batch.offsets()?.elements() {
                if let rdkafka::Offset::Offset(o) = e.offset() {
                    next.insert(e.partition(), o);
                }
            }
            run.batch(&batch, &mut decoder, &mut event_time, &mut aggregation, lateness).await?;
        }
        if *shutdown.borrow() {
            // Stopped before the end of time: nothing emitted is final, nothing is committed.
            anyhow::bail!("stopped by a signal before the end of the input: nothing committed");
        }
        // The end of the input is the end of time: every window goes.
        run.emit(&mut aggregation, None).await?;
        kafka::flush(&producer, delivery::ACK_TIMEOUT)?;
        match run.ack.wait(delivery::ACK_TIMEOUT) {
            delivery::Status::Complete(_) => {}
            delivery::Status::Failed(why) => anyhow::bail!("an output was not delivered: {why}"),
            delivery::Status::Waiting { .. } => {
                anyhow::bail!("outputs unacknowledged after {:?}", delivery::ACK_TIMEOUT)
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (p, o) in &next {
            offsets.add_partition_offset(&args.input_topic, *p, rdkafka::Offset::Offset(*o))?;
        }
        source.commit(&offsets)?;
        source.commit_last()
    }
    .await;
    let mut summary = run.summary;
    summary.totals.input_topic.clone_from(&args.input_topic);
    summary.totals.output_topic = Some(args.output_topic.clone());
    summary.totals.produced = deliveries.produced();
    summary.totals.seconds = start.elapsed().as_secs_f64();
    summary.totals.records_per_s = summary.totals.received as f64 / summary.totals.seconds.max(1e-9);
    if result.is_err() {
        // Nothing committed: the run's outputs are not its result.
        summary.totals.consumed = Ranges::default();
    }
    crate::summary::keep(&summary)?;
    result?;
    tracing::info!(
        records = summary.totals.received,
        windows = summary.windows,
        rows = summary.totals.counts.out,
        late = summary.late,
        "aggregate finished"
    );
    Ok(())
}

/// A run's state between batches.
struct Run<'a> {
    producer: &'a Producer,
    /// Every output of the run: it commits once all are acknowledged.
    ack: Arc<BatchAck>,
    args: &'a AggregateArgs,
    keys: &'a output::Keys,
    windows: window::Windows,
    /// The largest event time seen, less the allowed lateness.
    watermark: Option<i64>,
    /// Every window ending at or before this was emitted.
    emitted_until: Option<i64>,
    summary: Summary,
}

impl Run<'_> {
    async fn batch(
        &mut self,
        batch: &Batch,
        decoder: &mut RawReader,
        event_time: &mut event_time::EventTime,
        aggregation: &mut state::Aggregation,
        lateness: i64,
    ) -> Result<()> {
        let payloads: Vec<Option<&[u8]>> = batch.iter().map(|r| r.payload()).collect();
        let decoded = decoder.decode(&payloads).await?;
        let (mut times, failed) = event_time.times(&decoded, batch).await?;
        let mut rejected = decoded.rejected.clone();
        rejected.extend(failed);
        for (row, time) in times.iter_mut().enumerate() {
            let Some(t) = *time else { continue };
            // Late: its oldest window was emitted already (a record counts in all its windows or none).
            if let Some(oldest) = self.windows.starts(t).next()
                && self.emitted_until.is_some_and(|u| oldest + self.windows.size <= u)
            {
                let (start, end) = (output::rfc3339(oldest), output::rfc3339(oldest + self.windows.size));
                rejected.push((decoded.rows[row], format!("late: window [{start}, {end}) was emitted already")));
                self.summary.late += 1;
                *time = None;
            }
        }
        for (input, reason) in &rejected {
            let origin = stage::Origin { stage: STAGE, sink: None };
            stage::dead_letter(
                self.producer,
                &self.ack,
                &self.args.consume.dlq_topic,
                origin,
                batch.get(*input),
                reason,
            )
            .await?;
        }
        self.summary.totals.counts.dlq += rejected.len() as u64;
        let (windowed, _) = self.windows.assign(&decoded.batch, &times, &window::windowed_schema(&raw_schema()))?;
        aggregation.add(windowed).await?;
        let (rows, bytes) = aggregation.state_size();
        self.summary.state_rows = self.summary.state_rows.max(rows);
        self.summary.state_bytes = self.summary.state_bytes.max(bytes);
        if let Some(newest) = times.iter().flatten().max() {
            let mark = newest.saturating_sub(lateness);
            self.watermark = Some(self.watermark.map_or(mark, |w| w.max(mark)));
        }
        if self.watermark > self.emitted_until {
            self.emit(aggregation, self.watermark).await?;
        }
        Ok(())
    }

    /// Emit the windows ending at or before `until` (`None`: all).
    async fn emit(&mut self, aggregation: &mut state::Aggregation, until: Option<i64>) -> Result<()> {
        let out = aggregation.emit(until).await?;
        let rows = self.keys.rows(&out)?;
        self.summary.windows += self.keys.windows(&rows);
        for (key, payload) in &rows {
            let record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&self.args.output_topic).key(key.as_bytes()).payload(payload.as_bytes());
            kafka::send(self.producer, &self.ack, record).await?;
        }
        self.ack.count(Counts { out: rows.len() as u64, ..Counts::default() });
        self.summary.totals.counts.out += rows.len() as u64;
        if until.is_some() {
            self.emitted_until = until;
        }
        Ok(())
    }
}
