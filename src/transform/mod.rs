//! `rtds transform`: raw users -> Arrow -> DataFusion SQL -> clean rows, the
//! stage that replaces the Spark job. Bad records go to the DLQ with a reason;
//! offsets are committed only after every output and DLQ record is acknowledged
//! (or, with `--exactly-once`, inside the same Kafka transaction).

mod options;

pub use options::TransformArgs;

pub mod encode;
pub mod projection;
pub mod sql;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use rdkafka::producer::BaseRecord;

use crate::delivery::{BatchAck, Counts};
use crate::kafka::{self, Batch, Producer, Profile, Source};
use crate::kafka::{ClientOpts, Compression};
use crate::metrics::StageMetrics;
use crate::raw::decode::{RawDecoder, raw_schema};
use crate::raw::reader::RawReader;
use crate::registry::{Registry, RegistryOpts};
use crate::stage::{self, Commit, Relay};

const STAGE: &str = "transform";
/// A transform holds each batch in memory several times over (records, Arrow
/// columns, output) and raw records are large: small batches and prefetch
/// keep its memory low for about the same speed (bench/README.md, "Why the defaults").
pub const PROFILE: Profile = Profile { stage: STAGE, batch_size: 1000, prefetch_mb: 2 };

pub async fn run(
    kafka: &ClientOpts,
    registry: &RegistryOpts,
    metrics_addr: Option<std::net::SocketAddr>,
    args: &TransformArgs,
) -> Result<()> {
    kafka::check_consumer_settings(kafka)?;
    let registry = Registry::new(registry)?;
    let sql_text = args.sql.as_deref().map(crate::validate::read_sql_file).transpose()?;
    let reading = stage::reading(kafka, &args.consume, "rtds-transform", &args.input_topic)?;
    let transactions = args.transactions.plan(STAGE, &reading, &args.input_topic);
    let metrics = StageMetrics::new(STAGE, metrics_addr)?;
    // Not after a fence by another instance of its transactional id: that one does the work now.
    let may_start_over =
        |e: &anyhow::Error| transactions.as_ref().is_none_or(|t| !crate::delivery::fenced_by_a_twin(e, t.timeout));
    let start = Run { kafka, registry: registry.as_ref(), sql: sql_text.as_deref(), args, reading: &reading };
    let (mut totals, result) = stage::follow_through(args.consume.follow, may_start_over, async || {
        start.once(transactions.as_ref(), &metrics).await
    })
    .await?;
    totals.input_topic.clone_from(&args.input_topic);
    totals.output_topic = Some(args.output_topic.clone());
    crate::summary::keep(&totals)?;
    result?;
    tracing::info!(records = totals.received, out = totals.counts.out, dlq = totals.counts.dlq, "transform finished");
    Ok(())
}

/// What a run of the transform is made from; `once` runs it with a new
/// consumer and producer (a `--follow` run that failed starts over with them).
struct Run<'a> {
    kafka: &'a ClientOpts,
    registry: Option<&'a Registry>,
    sql: Option<&'a str>,
    args: &'a TransformArgs,
    reading: &'a kafka::Reading,
}

impl Run<'_> {
    /// Set up and run the batches: `Err` if the set-up failed, else the totals and how the batches ended.
    async fn once(
        &self,
        transactions: Option<&stage::Transactions>,
        metrics: &StageMetrics,
    ) -> Result<(stage::Totals, Result<()>)> {
        let args = self.args;
        // One transformer (and plan) per part of a batch transformed at once.
        let parts = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut transformers = Vec::with_capacity(parts);
        for _ in 0..parts {
            transformers.push(Transformer::new(self.sql, self.registry.cloned()).await?);
        }
        if args.output_format == crate::avro::Format::Avro {
            write_avro(&mut transformers, self.registry, &args.output_topic).await?;
        }
        let transformers = transformers.into_iter().map(tokio::sync::Mutex::new).collect();
        kafka::ensure_topics(
            self.kafka,
            &[&args.input_topic, &args.output_topic, &args.consume.dlq_topic],
            &args.topics,
        )
        .await?;
        let transactional = transactions.map(stage::Transactions::kafka);
        let (producer, deliveries) = kafka::producer(self.kafka, Compression::Lz4, kafka::LINGER_BATCH, transactional)?;
        let mut source =
            Source::open(self.kafka, &PROFILE, &args.input_topic, self.reading, args.consume.end_wait).await?;
        let pipeline = Arc::new(Pipeline {
            transformers,
            producer,
            output_topic: args.output_topic.clone(),
            dlq_topic: args.consume.dlq_topic.clone(),
        });
        // A batch is transformed and sent on a worker task while the next is
        // consumed (in a transaction too: it commits once the work is done).
        let mut worker = Relay::new(());
        let commit = transactions.map_or(Commit::AfterAck, stage::Transactions::commit);
        Ok(stage::run_batches(
            &mut source,
            &args.consume,
            &pipeline.producer,
            &deliveries,
            commit,
            metrics,
            async |batch, ack| {
                let (pipeline, batch) = (pipeline.clone(), batch.clone());
                // Counted with the hold's release.
                worker.start(ack.hold(), move |(), ack| async move { ((), pipeline.process(&batch, &ack).await) }).await
            },
        )
        .await)
    }
}

/// `--output-format avro`: the schema of the SQL's rows (the contract's
/// timestamps typed, `avro::typed`), registered for the
/// output topic (a registry that refuses it stops the stage: exit 2 naming
/// the subject and the reason), and each transformer writing it.
async fn write_avro(transformers: &mut [Transformer], registry: Option<&Registry>, topic: &str) -> Result<()> {
    let Some(first) = transformers.first() else { return Ok(()) };
    let typed = crate::avro::typed::schema(&first.query.output_schema());
    let schema = crate::avro::row_schema(&typed)?;
    let id = crate::avro::register_for(registry, "--output-format avro", topic, &schema).await?;
    for t in transformers {
        t.writer = Some(crate::avro::Writer::new(&typed, &schema, id)?);
    }
    Ok(())
}

/// The transform itself, apart from Kafka: raw payloads in, clean rows and
/// rejected inputs out. Planned once; `apply` runs per batch.
pub struct Transformer {
    decoder: RawReader,
    query: sql::Query,
    /// With `--output-format avro`, the rows' writer; JSON without.
    writer: Option<crate::avro::Writer>,
}

/// What a batch became.
#[derive(Default)]
pub struct Applied {
    /// The clean rows.
    pub rows: encode::Rows,
    /// The index of the input each row came from, when known.
    pub inputs: Vec<Option<usize>>,
    /// Inputs that go to the DLQ, with the reason.
    pub rejected: Vec<(usize, String)>,
    /// Rows the SQL filtered out.
    pub filtered: u64,
}

impl Transformer {
    /// Plan `sql` (the built-in SQL if `None`) against the raw schema; Avro
    /// records are read with `registry`'s schemas.
    pub async fn new(sql: Option<&str>, registry: Option<Registry>) -> Result<Self> {
        let query = sql::Query::plan(sql.unwrap_or(sql::DEFAULT_SQL), raw_schema()).await?;
        let reads = query.reads();
        let decoder = RawReader::new(RawDecoder::reading(|path| reads.leaf(path)), registry)?;
        let mut transformer = Self { decoder, query, writer: None };
        transformer.warm_up().await;
        Ok(transformer)
    }

    /// Run a few generated users through decoding, the SQL and encoding once,
    /// and drop the result: the first run pages in most of the binary's code
    /// (DataFusion's operators, arrow kernels), about half a second on a busy
    /// machine, which the first real batch would otherwise wait for. A custom
    /// SQL may reject or filter them: only the work matters, not the outcome.
    async fn warm_up(&mut self) {
        let records = crate::generate::Generator::new(0).records(WARM_UP_RECORDS);
        let payloads: Vec<Option<&[u8]>> = records.iter().map(|r| Some(r.as_slice())).collect();
        let Ok(decoded) = self.decoder.decode_json(&payloads) else { return };
        if let Ok(out) = self.query.run(decoded.batch).await {
            let _ = encode::rows(&out);
        }
    }

    /// The SQL's output as rows in the run's format.
    fn encode(&mut self, out: &[arrow::array::RecordBatch]) -> Result<encode::Rows> {
        match &mut self.writer {
            Some(writer) => encode::avro_rows(out, writer),
            None => encode::rows(out),
        }
    }

    pub async fn apply(&mut self, payloads: &[Option<&[u8]>]) -> Result<Applied> {
        let decoded = self.decoder.decode(payloads).await?;
        let mut rejected = decoded.rejected;
        if decoded.rows.is_empty() {
            return Ok(Applied { rejected, ..Applied::default() });
        }
        let rows = match self.query.run(decoded.batch.clone()).await {
            Ok(out) => self.encode(&out)?,
            // One row made the SQL fail: run row by row to find it, keep the rest.
            Err(e) => {
                tracing::warn!("SQL failed on a batch, isolating the bad rows: {e:#}");
                let mut rows = encode::Rows::default();
                for (n, input) in decoded.rows.iter().enumerate() {
                    match self.query.run(decoded.batch.slice(n, 1)).await {
                        Ok(out) => rows.append(&self.encode(&out)?),
                        Err(e) => rejected.push((*input, format!("SQL failed: {e:#}"))),
                    }
                }
                rows
            }
        };
        let inputs = inputs_of(&rows, &decoded.ids, &decoded.rows);
        rejected.extend(refused_inputs(&rows, &inputs, &decoded.ids, &decoded.rows));
        // Filtered: decoded inputs the SQL neither failed on nor made a row
        // of, counted one by one (a SQL that made two rows of one input, or a
        // row of none, leaves in != out + dlq + filtered for reconcile to see).
        let mut accounted = vec![false; payloads.len()];
        for i in inputs.iter().flatten().copied().chain(rejected.iter().map(|(i, _)| *i)) {
            accounted[i] = true;
        }
        let filtered = decoded.rows.iter().filter(|i| !accounted[**i]).count() as u64;
        Ok(Applied { rows, inputs, rejected, filtered })
    }
}

/// The input record of each row, for the headers it carries on: the next
/// input of its id not yet taken (an id may come twice in a batch when a topic
/// was replayed). Most SQL keeps every row in input order: then row i is
/// decoded row i, found without a map.
fn inputs_of(rows: &encode::Rows, ids: &[String], inputs: &[usize]) -> Vec<Option<usize>> {
    if rows.len() == ids.len() && rows.iter().zip(ids).all(|((row_id, _), id)| row_id == id) {
        return inputs.iter().map(|i| Some(*i)).collect();
    }
    let mut by_id: HashMap<&str, std::collections::VecDeque<usize>> = HashMap::new();
    for (id, input) in ids.iter().zip(inputs) {
        by_id.entry(id.as_str()).or_default().push_back(*input);
    }
    rows.iter().map(|(id, _)| by_id.get_mut(id).and_then(|q| q.pop_front())).collect()
}

/// The input of each row the output format refused, with why: the first
/// input of its id that no row came from (nor an earlier refused row).
fn refused_inputs(
    rows: &encode::Rows,
    row_inputs: &[Option<usize>],
    ids: &[String],
    inputs: &[usize],
) -> Vec<(usize, String)> {
    let mut taken: std::collections::HashSet<usize> = row_inputs.iter().flatten().copied().collect();
    let mut out = Vec::with_capacity(rows.refused.len());
    for (id, why) in &rows.refused {
        let input =
            ids.iter().zip(inputs).find(|(i, input)| *i == id && !taken.contains(input)).map(|(_, input)| *input);
        if let Some(input) = input {
            taken.insert(input);
            out.push((input, format!("the Avro row cannot hold it: {why}")));
        }
    }
    out
}

impl Applied {
    /// Add what the next part of the batch became, its inputs numbered from `start`.
    fn append(&mut self, part: Applied, start: usize) {
        self.rows.append(&part.rows);
        self.inputs.extend(part.inputs.into_iter().map(|input| input.map(|i| i + start)));
        self.rejected.extend(part.rejected.into_iter().map(|(i, why)| (i + start, why)));
        self.filtered += part.filtered;
    }
}

/// Generated records a transformer runs once at start-up (`Transformer::warm_up`).
const WARM_UP_RECORDS: u64 = 64;

/// Records below which a batch is not split: a part's fixed costs (planning,
/// tasks) would outweigh what another core gains.
const MIN_PART: usize = 500;

struct Pipeline {
    /// One per part a batch is transformed in at once (as many as cores); a
    /// part takes the one of its number.
    transformers: Vec<tokio::sync::Mutex<Transformer>>,
    producer: Producer,
    output_topic: String,
    dlq_topic: String,
}

impl Pipeline {
    /// Transform a batch and hand every output and DLQ record to the producer.
    async fn process(self: &Arc<Self>, batch: &Arc<Batch>, ack: &Arc<BatchAck>) -> Result<Counts> {
        let applied = self.apply_in_parts(batch).await?;
        for (i, reason) in &applied.rejected {
            let origin = stage::Origin { stage: STAGE, sink: None };
            stage::dead_letter(&self.producer, ack, &self.dlq_topic, origin, batch.get(*i), reason).await?;
        }
        for ((id, payload), input) in applied.rows.iter().zip(&applied.inputs) {
            let headers = match input.and_then(|i| batch.get(i).ingested_at()) {
                Some(at) => kafka::headers(&[(kafka::INGESTED_AT, at)]),
                None => kafka::headers(&[]),
            };
            let record = BaseRecord::to(&self.output_topic).key(id.as_bytes()).payload(payload).headers(headers);
            kafka::send(&self.producer, ack, record).await?;
        }
        Ok(Counts { out: applied.rows.len() as u64, dlq: applied.rejected.len() as u64, filtered: applied.filtered })
    }

    /// Transform the batch in parts at once, one per core (decoding JSON is
    /// most of a stage's work), and put their outputs back in input order.
    async fn apply_in_parts(self: &Arc<Self>, batch: &Arc<Batch>) -> Result<Applied> {
        let n = batch.len();
        let parts = self.transformers.len().min(n.div_ceil(MIN_PART)).max(1);
        if parts == 1 {
            // A small batch is transformed here: a task of its own would cost a hand-off between threads.
            return self.apply_part(batch, 0, 0..n).await;
        }
        let size = n.div_ceil(parts).max(1);
        let running: Vec<_> = (0..n)
            .step_by(size)
            .enumerate()
            .map(|(k, start)| {
                let (pipeline, batch) = (self.clone(), batch.clone());
                let task = tokio::spawn(async move {
                    let end = (start + size).min(batch.len());
                    pipeline.apply_part(&batch, k, start..end).await
                });
                (start, task)
            })
            .collect();
        let mut applied = Applied::default();
        for (start, task) in running {
            applied.append(task.await.context("a transform task stopped")??, start);
        }
        Ok(applied)
    }

    /// Transformer `k` over the records `part` of the batch.
    async fn apply_part(&self, batch: &Batch, k: usize, part: std::ops::Range<usize>) -> Result<Applied> {
        let payloads: Vec<Option<&[u8]>> = part.map(|i| batch.get(i).payload()).collect();
        self.transformers[k].lock().await.apply(&payloads).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_finds_its_input_in_order_or_not() {
        let rows = |ids: &[&str]| encode::Rows::of(&ids.iter().map(|id| (*id, "{}")).collect::<Vec<_>>());
        let ids: Vec<String> = ["a", "b", "a", "c"].map(String::from).into();
        let inputs = [0, 2, 5, 7];
        let in_order = rows(&["a", "b", "a", "c"]);
        assert_eq!(inputs_of(&in_order, &ids, &inputs), [Some(0), Some(2), Some(5), Some(7)]);
        let reordered = rows(&["b", "a", "c", "a"]);
        assert_eq!(inputs_of(&reordered, &ids, &inputs), [Some(2), Some(0), Some(7), Some(5)]);
        // Filtered and reordered: each id takes its inputs in turn; an unknown id has none.
        let shuffled = rows(&["c", "a", "x", "a", "a"]);
        assert_eq!(inputs_of(&shuffled, &ids, &inputs), [Some(7), Some(0), None, Some(5), None]);
    }

    #[tokio::test]
    async fn parts_put_back_together_keep_each_row_with_its_input() {
        let good = |uuid: &str| format!(r#"{{"login":{{"uuid":"{uuid}"}}}}"#);
        let first = [good("7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6"), "{broken".to_owned()];
        let second = ["null".to_owned(), good("0b6d2f7e-5c1a-4b8e-9f3d-2a7c6e1d9b40")];
        let mut t = Transformer::new(None, None).await.unwrap();
        let mut all = Applied::default();
        for (part, start) in [(&first, 0), (&second, 2)] {
            let payloads: Vec<Option<&[u8]>> = part.iter().map(|p| Some(p.as_bytes())).collect();
            all.append(t.apply(&payloads).await.unwrap(), start);
        }
        let rows: Vec<(&str, Option<usize>)> =
            all.rows.iter().map(|(id, _)| id).zip(all.inputs.iter().copied()).collect();
        assert_eq!(
            rows,
            [("7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6", Some(0)), ("0b6d2f7e-5c1a-4b8e-9f3d-2a7c6e1d9b40", Some(3))]
        );
        for (id, json) in all.rows.iter() {
            let row: serde_json::Value = serde_json::from_slice(json).unwrap();
            assert_eq!(row["id"], id, "a row's JSON stays with its key after the parts are joined");
        }
        let rejected: Vec<usize> = all.rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(rejected, [1, 2]);
    }
}
