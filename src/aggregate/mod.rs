//! `rtds aggregate`: raw users (or clean rows) -> counts, sums, averages by event-time window
//! (tumbling or hopping), DataFusion's partial and final aggregation over the
//! stream. A watermark trails the largest event time seen by the allowed
//! lateness; a window is emitted once it passes the window's end. A record
//! counts in each of its windows not emitted yet, and goes to the DLQ as late
//! when all are. Offsets are committed up to the oldest record still counted in
//! an open window, once every output before is acknowledged (`commits`): a
//! restart reads the rest again and rebuilds the open windows, and emitted
//! rows are keyed by window and group, so a window emitted again overwrites
//! itself. With `--exactly-once` the windows, dead letters and those offsets
//! (with their metadata) are committed together in Kafka transactions. A
//! bounded run takes the end of its input as the end of time and emits every
//! window it holds; `--follow` runs until a signal.

mod commits;
mod event_time;
mod input;
mod options;
pub mod oracle;
mod output;
pub mod state;
pub mod window;

pub use options::AggregateArgs;
pub use output::late_until;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow::datatypes::SchemaRef;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;
use rdkafka::producer::BaseRecord;

use crate::delivery::{self, BatchAck, Cadence, Pending, Ranges, Transaction};
use crate::kafka::{self, Batch, ClientOpts, Compression, Producer, Profile, Reading, Source};
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
    /// Records of windows emitted already, sent to the DLQ (`partly_late`: of
    /// them, those still counted in a later window of theirs, a hopping window).
    late: u64,
    partly_late: u64,
    /// Records read again after a restart whose windows were emitted (or that were dead-lettered) before it.
    skipped: u64,
    /// Records counted in at least one window.
    counted: u64,
    /// The SQL and event time the run aggregated with, and where its emitted
    /// windows stood (ms) at its start and end: what reconcile needs to check it.
    sql: String,
    event_time: Option<String>,
    emitted_before: Option<i64>,
    emitted_until: Option<i64>,
    /// With --sink: where the windows were upserted.
    #[serde(skip_serializing_if = "Option::is_none")]
    stored_in: Option<StoredIn>,
    /// Store writes retried.
    retried: u64,
    /// The state's largest size: rows (a window and group each) and bytes.
    state_rows: usize,
    state_bytes: usize,
}

pub async fn run(
    kafka: &ClientOpts,
    registry: &RegistryOpts,
    metrics_addr: Option<std::net::SocketAddr>,
    args: &AggregateArgs,
) -> Result<()> {
    kafka::check_consumer_settings(kafka)?;
    let sql = crate::validate::read_sql_file(&args.sql)?;
    let Plan { windows, schema, mut aggregation, keys, mut event_time, mut decoder } =
        Plan::new(&sql, args.event_time.as_deref(), Registry::new(registry)?).await?;
    let mut store = match args.sink {
        Some(sink) => {
            let shape = crate::sinks::keyed::Shape::of(&aggregation.output_schema(), keys.window(), &keys.group())?;
            let writer = sink.open_keyed(&args.sinks, &args.table, &shape).await?;
            Some(Store { name: sink.name(), shape, writer })
        }
        None => None,
    };
    let reading = stage::reading(kafka, &args.consume, "rtds-aggregate", &args.input_topic)?;
    let follow = matches!(reading, Reading::Follow { .. });
    kafka::ensure_topics(kafka, &[&args.input_topic, &args.output_topic, &args.consume.dlq_topic], &args.topics)
        .await?;
    let transactions = args.transactions.plan(STAGE, &reading, &args.input_topic);
    let transactional = transactions.as_ref().map(stage::Transactions::kafka);
    let (producer, deliveries) = kafka::producer(kafka, Compression::Lz4, kafka::LINGER_BATCH, transactional)?;
    let commits = match &transactions {
        Some(t) => Commits::InTransaction(Transaction::new(&deliveries), t.cadence),
        None => Commits::AfterAck(VecDeque::new()),
    };
    let mut source = Source::open(kafka, &PROFILE, &args.input_topic, &reading, args.consume.end_wait).await?;
    let metrics = crate::metrics::StageMetrics::new(STAGE, metrics_addr)?;
    let location = store.as_ref().map(|s| s.writer.location());
    let mut run = Run {
        producer: &producer,
        ack: Arc::new(BatchAck::default()),
        args,
        keys: &keys,
        store: store.as_mut(),
        windows,
        schema,
        lateness: i64::try_from(args.allowed_lateness.as_millis()).unwrap_or(i64::MAX),
        watermark: None,
        emitted_until: None,
        holds: commits::Holds::default(),
        restored: None,
        next: HashMap::new(),
        partitions: Vec::new(),
        marks: HashMap::new(),
        commits,
        summary: Summary {
            totals: stage::Totals { stage: STAGE, dlq_topic: args.consume.dlq_topic.clone(), ..Default::default() },
            windows: 0,
            late: 0,
            partly_late: 0,
            skipped: 0,
            counted: 0,
            sql: sql.clone(),
            event_time: args.event_time.clone(),
            emitted_before: None,
            emitted_until: None,
            stored_in: args.sink.zip(location).map(|(sink, table)| StoredIn { sink, table }),
            retried: 0,
            state_rows: 0,
            state_bytes: 0,
        },
    };
    let start = Instant::now();
    let batch_size = args.consume.batch_size.map_or(PROFILE.batch_size, |n| n as usize);
    let mut shutdown = crate::shutdown::listen();
    let revocations = source.revocations();
    let result: Result<()> = async {
        while let Some(batch) = source.next_batch(batch_size, args.consume.max_wait, &mut shutdown).await? {
            if source.revocations() != revocations {
                // Another member holds some of the windows' records now: this one's state is not whole.
                anyhow::bail!(
                    "partitions were reassigned: stopping, so that a restart rebuilds the open windows \
                     from the committed offsets"
                );
            }
            if batch.is_empty() {
                run.commit_ready(&mut source, Moment::Idle)?;
                continue;
            }
            if run.restored.is_none() {
                run.restore(&source)?;
            }
            run.begin()?;
            let consumed = source.spans(&batch);
            run.summary.totals.received += batch.len() as u64;
            run.summary.totals.batches += 1;
            run.summary.totals.consumed.merge(&consumed);
            for e in batch.offsets()?.elements() {
                if let rdkafka::Offset::Offset(o) = e.offset() {
                    run.next.insert(e.partition(), o);
                }
            }
            let (took, before) = (Instant::now(), run.summary.totals.counts);
            run.batch(&batch, &source, &mut decoder, &mut event_time, &mut aggregation).await?;
            let made = run.summary.totals.counts;
            metrics.batch(batch.len() as u64, made.out - before.out, made.dlq - before.dlq, took.elapsed());
            run.hold_commit(batch.len() as u64)?;
            let caught_up = batch.len() < batch_size && source.caught_up(&consumed);
            run.commit_ready(&mut source, Moment::Batch { caught_up })?;
        }
        let stopped = *shutdown.borrow();
        if !stopped && !follow {
            // The end of the input is the end of time: every window goes.
            run.begin()?;
            run.emit(&mut aggregation, None).await?;
            run.hold_commit(0)?;
        }
        kafka::flush(&producer, delivery::ACK_TIMEOUT)?;
        if let Commits::AfterAck(pending) = &run.commits {
            for (ack, _) in pending {
                if let delivery::Status::Waiting { .. } = ack.wait(delivery::ACK_TIMEOUT) {
                    anyhow::bail!("outputs unacknowledged after {:?}", delivery::ACK_TIMEOUT);
                }
            }
        }
        run.commit_ready(&mut source, Moment::End)?;
        source.commit_last()?;
        if stopped && !follow {
            anyhow::bail!(
                "stopped by a signal before the end of the input: the open windows were not emitted \
                 (offsets committed up to them: the next run rebuilds them)"
            );
        }
        Ok(())
    }
    .await;
    if result.is_err()
        && let Commits::InTransaction(transaction, _) = &mut run.commits
    {
        transaction.abort(&producer);
    }
    run.summary.emitted_until = run.emitted_until;
    let mut summary = run.summary;
    summary.totals.input_topic.clone_from(&args.input_topic);
    summary.totals.output_topic = Some(args.output_topic.clone());
    summary.totals.produced = deliveries.produced();
    summary.totals.timed(start);
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

#[derive(serde::Serialize)]
struct StoredIn {
    sink: crate::sinks::Sink,
    table: String,
}

/// What a run plans from its SQL and event time: the windows, the table the
/// SQL reads (raw users or clean rows, with `__window`), the aggregation, the
/// keys of its rows, and a decoder of that table's records reading what both need.
pub struct Plan {
    pub windows: window::Windows,
    pub schema: SchemaRef,
    pub aggregation: state::Aggregation,
    pub keys: output::Keys,
    pub event_time: event_time::EventTime,
    pub decoder: input::Decoder,
}

impl Plan {
    pub async fn new(sql: &str, event_time: Option<&str>, registry: Option<Registry>) -> Result<Self> {
        let windowed = window::take_window(sql).await?;
        let input = windowed.input;
        let schema = window::windowed_schema(&input.schema());
        let aggregation = state::Aggregation::plan(&windowed.sql, input.table(), schema.clone()).await?;
        let keys = output::Keys::of(&aggregation.output_schema(), &windowed.group_by)?;
        let event_time = event_time::EventTime::plan(event_time, input).await?;
        let reads = |path: &str| aggregation.reads().leaf(path) || event_time.reads(path);
        let decoder = input::Decoder::new(input, reads, registry)?;
        Ok(Self { windows: windowed.windows, schema, aggregation, keys, event_time, decoder })
    }
}

/// With --sink, the table the windows are upserted into.
struct Store {
    name: &'static str,
    shape: crate::sinks::keyed::Shape,
    writer: Box<dyn crate::sinks::keyed::KeyedWriter>,
}

/// A partition's offset to commit, and the metadata it goes with.
type Commit = (i32, i64, String);

/// How the run commits its offsets.
enum Commits<'a> {
    /// Per batch, its outputs and the offsets it lets the run commit, in
    /// order: each batch's once its outputs are all acknowledged.
    AfterAck(VecDeque<(Arc<BatchAck>, Vec<Commit>)>),
    /// `--exactly-once`: with the outputs, in the open transaction, as often
    /// as the cadence says (none: once, at the end of the run).
    InTransaction(Transaction<'a>, Option<Cadence>),
}

/// When the run commits.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// After a batch, `caught_up` when its input had nothing more waiting.
    Batch { caught_up: bool },
    /// The input is idle.
    Idle,
    /// The run ends.
    End,
}

/// A run's state between batches.
struct Run<'a> {
    producer: &'a Producer,
    /// The outputs of the batch being processed (dead letters, windows emitted).
    ack: Arc<BatchAck>,
    args: &'a AggregateArgs,
    keys: &'a output::Keys,
    store: Option<&'a mut Store>,
    windows: window::Windows,
    /// The table the SQL reads (raw users or clean rows) with `__window`.
    schema: SchemaRef,
    lateness: i64,
    /// The largest event time seen, less the allowed lateness.
    watermark: Option<i64>,
    /// Every window ending at or before this was emitted.
    emitted_until: Option<i64>,
    holds: commits::Holds,
    /// Per partition, what its last commit said (read once, with the first batch).
    restored: Option<HashMap<i32, commits::Restored>>,
    /// Per partition, the offset after the last read (from its commit until read).
    next: HashMap<i32, i64>,
    /// The partitions the run reads, and the largest event time read in each.
    partitions: Vec<i32>,
    marks: HashMap<i32, i64>,
    commits: Commits<'a>,
    summary: Summary,
}

impl Run<'_> {
    /// What the group's last commits said: windows emitted up to there are not emitted again.
    fn restore(&mut self, source: &Source) -> Result<()> {
        let mut restored = HashMap::new();
        let assigned = source.consumer.assignment().context("reading the partitions assigned")?;
        for e in assigned.elements() {
            self.partitions.push(e.partition());
            let Some((committed, metadata)) = source.committed_metadata(e.partition())? else { continue };
            self.next.insert(e.partition(), committed);
            if let Some(r) = commits::Restored::parse(&metadata) {
                self.emitted_until = self.emitted_until.max(r.emitted);
                // Records between the commit and where it had read are read again.
                if committed < r.read {
                    restored.insert(e.partition(), r);
                }
            }
        }
        if !restored.is_empty() {
            tracing::info!(emitted_until = ?self.emitted_until, "rebuilding the open windows from the committed offsets");
        }
        self.watermark = self.emitted_until;
        self.summary.emitted_before = self.emitted_until;
        self.restored = Some(restored);
        Ok(())
    }

    /// A record below what its partition's last commit had decided: the
    /// windows it counted in were emitted then, or are open again now.
    fn decided_before(&self, partition: i32, offset: i64) -> Option<commits::Restored> {
        self.restored.as_ref()?.get(&partition).filter(|r| offset < r.read).copied()
    }

    /// Still reading what was decided before the restart: no window may be
    /// emitted until every partition is back where its commit was.
    fn catching_up(&self) -> bool {
        self.restored
            .as_ref()
            .is_some_and(|r| r.iter().any(|(p, at)| self.next.get(p).is_none_or(|next| *next < at.read)))
    }

    async fn batch(
        &mut self,
        batch: &Batch,
        source: &Source,
        decoder: &mut input::Decoder,
        event_time: &mut event_time::EventTime,
        aggregation: &mut state::Aggregation,
    ) -> Result<()> {
        let decoded = decoder.decode(batch).await?;
        let (times, failed) = event_time.times(&decoded, batch).await?;
        let mut rejected: Vec<(usize, String)> = decoded.rejected.iter().cloned().chain(failed).collect();
        // Dead-lettered before the restart already.
        let before = rejected.len();
        rejected.retain(|(i, _)| self.decided_before(batch.get(*i).partition(), batch.get(*i).offset()).is_none());
        self.summary.skipped += (before - rejected.len()) as u64;
        let size = self.windows.size;
        let mut pairs = Vec::new();
        for (row, time) in times.iter().enumerate() {
            let Some(t) = *time else { continue };
            let record = batch.get(decoded.rows[row]);
            let mark = self.marks.entry(record.partition()).or_insert(t);
            *mark = (*mark).max(t);
            let decided = self.decided_before(record.partition(), record.offset());
            let after = decided.map_or(self.emitted_until, |d| d.emitted);
            let (missed, open): (Vec<i64>, Vec<i64>) =
                self.windows.starts(t).partition(|s| after.is_some_and(|u| s + size <= u));
            if let (Some(newest), None) = (missed.last(), decided) {
                // Windows emitted already (every one up to the newest it missed): it is late for
                // them, and says so in the DLQ; a hopping window's record may still count in its others.
                rejected.push((decoded.rows[row], output::late_reason(*newest, size)));
                self.summary.late += 1;
                self.summary.partly_late += u64::from(!open.is_empty());
            }
            if open.is_empty() {
                self.summary.skipped += u64::from(decided.is_some());
                continue;
            }
            for start in open {
                self.holds.add(start, record.partition(), record.offset());
                pairs.push((row as u32, start));
            }
            self.summary.counted += 1;
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
        aggregation.add(self.windows.rows(&decoded.batch, &pairs, &self.schema)?).await?;
        let (rows, bytes) = aggregation.state_size();
        self.summary.state_rows = self.summary.state_rows.max(rows);
        self.summary.state_bytes = self.summary.state_bytes.max(bytes);
        if let Some(low) = self.low_mark(source) {
            self.watermark = self.watermark.max(Some(low.saturating_sub(self.lateness)));
        }
        if self.watermark > self.emitted_until && !self.catching_up() {
            self.emit(aggregation, self.watermark).await?;
        }
        Ok(())
    }

    /// The event time every partition with records still to read has reached
    /// (the smallest of their largest): a partition read further than another
    /// does not make the other's records late. None while one with records to
    /// read has given none yet; a partition read to its end does not hold the
    /// others back (when all are, the smallest of them all).
    fn low_mark(&self, source: &Source) -> Option<i64> {
        let mut low: Option<i64> = None;
        for p in &self.partitions {
            let more = source.has_more(*p, self.next.get(p).copied().unwrap_or(0));
            match self.marks.get(p) {
                Some(m) if more => low = Some(low.map_or(*m, |l| l.min(*m))),
                None if more => return None,
                _ => {}
            }
        }
        low.or_else(|| self.marks.values().min().copied())
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
        self.summary.totals.counts.out += rows.len() as u64;
        if let Some(store) = self.store.as_deref_mut()
            && !rows.is_empty()
        {
            // Written before the batch's offsets are committed (they wait for this): a crash re-emits, and overwrites.
            let values = store.shape.values(&out)?;
            let retried = std::sync::atomic::AtomicU64::new(0);
            let mut retry = crate::sinks::Retry::new(store.name, self.args.retry_for, &retried);
            while let Err(failed) = store.writer.upsert(&values).await {
                retry.after(failed).await?;
            }
            self.summary.retried += retried.into_inner();
        }
        let emitted = until.or_else(|| self.holds.last_end(self.windows.size));
        self.emitted_until = self.emitted_until.max(emitted);
        self.holds.release(until, self.windows.size);
        Ok(())
    }

    /// A batch's outputs begin: under a new ack, and in a transaction (with `--exactly-once`).
    fn begin(&mut self) -> Result<()> {
        self.ack = Arc::new(BatchAck::default());
        if let Commits::InTransaction(transaction, _) = &mut self.commits {
            transaction.begin(self.producer)?;
        }
        Ok(())
    }

    /// The offsets the batch just processed (of `received` records) lets the
    /// run commit, once its outputs are acknowledged.
    fn hold_commit(&mut self, received: u64) -> Result<()> {
        let offsets: Vec<Commit> = self
            .next
            .iter()
            .map(|(p, next)| {
                (*p, self.holds.commit_point(*p, *next), commits::Restored::metadata(self.emitted_until, *next))
            })
            .collect();
        match &mut self.commits {
            Commits::AfterAck(pending) => pending.push_back((self.ack.clone(), offsets)),
            Commits::InTransaction(transaction, _) => {
                let mut tpl = TopicPartitionList::new();
                for (p, offset, metadata) in offsets {
                    let mut e = tpl.add_partition(&self.args.input_topic, p);
                    e.set_offset(rdkafka::Offset::Offset(offset)).context("building the offsets to commit")?;
                    e.set_metadata(metadata);
                }
                let ack = self.ack.clone();
                let (consumed, took) = (Ranges::default(), Duration::ZERO);
                transaction.add(Pending { offsets: tpl, ack, received, consumed, took });
            }
        }
        Ok(())
    }

    /// Commit what `moment` lets: at least once, in order, the offsets of
    /// every batch whose outputs are all acknowledged; exactly once, the open
    /// transaction when its cadence says, the input is idle, or the run ends.
    fn commit_ready(&mut self, source: &mut Source, moment: Moment) -> Result<()> {
        let pending = match &mut self.commits {
            Commits::AfterAck(pending) => pending,
            Commits::InTransaction(transaction, cadence) => {
                let due = match moment {
                    Moment::Batch { caught_up } => cadence.is_some_and(|c| transaction.due(&c, caught_up)),
                    Moment::Idle => cadence.is_some(),
                    Moment::End => true,
                };
                if due && transaction.is_open() {
                    transaction.commit(self.producer, source.group_metadata().as_ref(), |_, _| {})?;
                    #[cfg(feature = "fault-injection")]
                    crate::delivery::fault::passing("AGGREGATE_COMMIT");
                }
                return Ok(());
            }
        };
        while let Some((ack, offsets)) = pending.front() {
            match ack.status() {
                delivery::Status::Complete(_) => {}
                delivery::Status::Failed(why) => anyhow::bail!("an output was not delivered: {why}"),
                delivery::Status::Waiting { .. } => break,
            }
            let mut tpl = TopicPartitionList::new();
            for (p, offset, metadata) in offsets {
                source.set_commit_metadata(*p, metadata.clone());
                tpl.add_partition_offset(&self.args.input_topic, *p, rdkafka::Offset::Offset(*offset))?;
            }
            source.commit(&tpl)?;
            #[cfg(feature = "fault-injection")]
            if std::env::var_os("RTDS_FAULT_KILL_AT_AGGREGATE_COMMIT").is_some() {
                // The test kills the run after this commit: stored, not only sent.
                source.commit_last()?;
                crate::delivery::fault::passing("AGGREGATE_COMMIT");
            }
            pending.pop_front();
        }
        if let Moment::Idle = moment {
            source.send_commits()?;
        }
        Ok(())
    }
}
