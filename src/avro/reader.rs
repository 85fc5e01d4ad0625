//! Framed Avro records to Arrow: each record is read with the registry's
//! schema of its id (fetched once, cached) and resolved to one reader schema
//! (Avro schema resolution: fields the reader does not know are skipped,
//! fields the writer lacks take their defaults), then cast to the Arrow
//! schema the caller works with. A record that cannot be read is set aside
//! with its reason; its neighbours go on.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{cast, concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};

use crate::registry::{Registry, RegistryError, wire};

/// What reading a set of records gives: the good rows in input order, the
/// input index of each, and the rejected inputs with their reasons.
#[derive(Debug)]
pub struct Read {
    pub batch: RecordBatch,
    pub rows: Vec<usize>,
    pub rejected: Vec<(usize, String)>,
}

/// One writer's records read: batches of rows, their inputs, the rejected.
struct Group {
    batches: Vec<RecordBatch>,
    rows: Vec<usize>,
    rejected: Vec<(usize, String)>,
}

/// Reads framed records as one reader schema.
pub struct Reader {
    registry: Option<Registry>,
    reader_schema: String,
    target: SchemaRef,
    /// By writer id: its schema's text, or why records of it cannot be read.
    writers: HashMap<u32, std::result::Result<String, String>>,
}

impl Reader {
    /// A reader of records as `reader_schema` (Avro JSON), their rows cast to `target`.
    pub fn new(registry: Option<Registry>, reader_schema: &str, target: SchemaRef) -> Self {
        Self { registry, reader_schema: reader_schema.to_owned(), target, writers: HashMap::new() }
    }

    /// Read `records` (input index, bytes). Fails only when the registry
    /// cannot be asked (the records may be readable later); an id it does not
    /// hold, or bytes that are not Avro of their schema, reject the records.
    pub async fn read(&mut self, records: &[(usize, &[u8])]) -> Result<Read> {
        let mut by_writer: BTreeMap<u32, Vec<(usize, &[u8])>> = BTreeMap::new();
        let mut rejected = Vec::new();
        for &(i, bytes) in records {
            match wire::split(bytes) {
                Some((id, _)) => by_writer.entry(id).or_default().push((i, bytes)),
                None => rejected.push((i, "not a framed Avro record (too short)".to_owned())),
            }
        }
        let (mut batches, mut rows) = (Vec::new(), Vec::new());
        for (id, group) in by_writer {
            let writer = match self.writer(id).await? {
                Ok(schema) => schema,
                Err(why) => {
                    rejected.extend(group.iter().map(|(i, _)| (*i, why.clone())));
                    continue;
                }
            };
            let group = self.decode_group(id, &writer, &group)?;
            batches.extend(group.batches);
            rows.extend(group.rows);
            rejected.extend(group.rejected);
        }
        let batch = concat_batches(&self.target, &batches).context("joining the Avro rows")?;
        in_input_order(batch, rows, rejected)
    }

    /// The schema of writer `id`, from the registry once; `Err` with the
    /// reason its records are rejected.
    async fn writer(&mut self, id: u32) -> Result<std::result::Result<String, String>> {
        if let Some(known) = self.writers.get(&id) {
            return Ok(known.clone());
        }
        let found = match &self.registry {
            None => Err(format!("Avro record of schema id {id}, but no schema registry is configured")),
            Some(registry) => match registry.schema(id).await {
                Ok(schema) => Ok(schema.to_string()),
                Err(e) if matches!(e.downcast_ref(), Some(RegistryError::UnknownId(_))) => Err(format!("{e}")),
                Err(e) => return Err(e),
            },
        };
        let found = found.and_then(|schema| self.decoder(id, &schema).map(|_| schema));
        self.writers.insert(id, found.clone());
        Ok(found)
    }

    fn decoder(&self, id: u32, writer: &str) -> std::result::Result<Decoder, String> {
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        store.set(Fingerprint::Id(id), AvroSchema::new(writer.to_owned())).map_err(|e| e.to_string())?;
        ReaderBuilder::new()
            .with_writer_schema_store(store)
            .with_reader_schema(AvroSchema::new(self.reader_schema.clone()))
            .build_decoder()
            .map_err(|e| format!("schema id {id} cannot be read as the expected schema: {e}"))
    }

    /// The rows of one writer's records: all at once, or, when one of them
    /// fails, one by one (a failed record leaves the decoder mid-row: a fresh
    /// one reads the next).
    fn decode_group(&self, id: u32, writer: &str, group: &[(usize, &[u8])]) -> Result<Group> {
        let fresh = || self.decoder(id, writer).map_err(anyhow::Error::msg);
        let mut decoder = fresh()?;
        if let Ok(batches) = decode(&mut decoder, group.iter().map(|(_, b)| *b)) {
            let batches = batches.iter().map(|b| self.conform(b)).collect::<Result<Vec<_>>>()?;
            return Ok(Group { batches, rows: group.iter().map(|(i, _)| *i).collect(), rejected: Vec::new() });
        }
        let (mut batches, mut rows, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
        let mut decoder = fresh()?;
        for &(i, bytes) in group {
            match decode(&mut decoder, std::iter::once(bytes)) {
                Ok(one) => {
                    for b in &one {
                        batches.push(self.conform(b)?);
                    }
                    rows.push(i);
                }
                Err(why) => {
                    rejected.push((i, format!("undecodable Avro (schema id {id}): {why}")));
                    decoder = fresh()?;
                }
            }
        }
        Ok(Group { batches, rows, rejected })
    }

    /// `batch` as the target schema (the Avro side names its records in field metadata).
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .target
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| cast(column, field.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .context("casting Avro rows to the expected columns")?;
        RecordBatch::try_new(self.target.clone(), columns).context("casting Avro rows to the expected columns")
    }
}

/// Every record of `records` through `decoder`, each read whole; the batches.
fn decode<'a>(
    decoder: &mut Decoder,
    records: impl Iterator<Item = &'a [u8]>,
) -> std::result::Result<Vec<RecordBatch>, String> {
    let mut batches = Vec::new();
    for bytes in records {
        if decoder.batch_is_full() {
            batches.extend(decoder.flush().map_err(|e| e.to_string())?);
        }
        let read = decoder.decode(bytes).map_err(|e| e.to_string())?;
        if read != bytes.len() {
            return Err(format!("{read} of its {} bytes make a record", bytes.len()));
        }
    }
    batches.extend(decoder.flush().map_err(|e| e.to_string())?);
    Ok(batches)
}

/// The rows sorted by their input index (writers' groups came one after another).
fn in_input_order(batch: RecordBatch, rows: Vec<usize>, rejected: Vec<(usize, String)>) -> Result<Read> {
    match input_order(&rows) {
        None => Ok(Read { batch, rows, rejected }),
        Some(order) => {
            let batch = take_record_batch(&batch, &order)?;
            let rows = order.values().iter().map(|&k| rows[k as usize]).collect();
            Ok(Read { batch, rows, rejected })
        }
    }
}

/// The order that puts rows numbered by input index `rows` back in input
/// order, for `take`; `None` when they are in it already.
pub fn input_order(rows: &[usize]) -> Option<UInt32Array> {
    if rows.is_sorted() {
        return None;
    }
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    order.sort_by_key(|&k| rows[k as usize]);
    Some(UInt32Array::from(order))
}
