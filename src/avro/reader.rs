//! Framed Avro records to Arrow: each record is read with the registry's
//! schema of its id (fetched once, cached) and resolved to one reader schema
//! (Avro schema resolution: fields the reader does not know are skipped,
//! fields the writer lacks take their defaults), then cast to the Arrow
//! schema the caller works with. A record that cannot be read is set aside
//! with its reason; its neighbours go on.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StructArray, new_null_array};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::error::ArrowError;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};

use crate::registry::{Registry, RegistryError, wire};

/// What reading a set of records gives: the good rows, grouped by the schema
/// they were written with, the input index of each, and the rejected inputs
/// with their reasons. Callers order them (the raw reader) or look them up by
/// input (the loads).
#[derive(Debug)]
pub struct Read {
    pub batch: RecordBatch,
    pub rows: Vec<usize>,
    pub rejected: Vec<(usize, String)>,
}

/// A writer schema rtds reads: its text, and its decoder, kept from batch to
/// batch (building one parses both schemas).
struct Known {
    schema: String,
    decoder: Decoder,
}

/// Reads framed records as one reader schema.
pub struct Reader {
    registry: Option<Registry>,
    reader_schema: String,
    target: SchemaRef,
    /// By writer id: what reads its records, or why they cannot be read.
    writers: HashMap<u32, std::result::Result<Known, String>>,
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
            self.learn(id).await?;
            let known = match self.writers.get_mut(&id) {
                Some(Ok(known)) => known,
                Some(Err(why)) => {
                    rejected.extend(group.iter().map(|(i, _)| (*i, why.clone())));
                    continue;
                }
                None => unreachable!("learn records every id it is asked"),
            };
            let fresh = || decoder(&self.reader_schema, id, &known.schema).map_err(anyhow::Error::msg);
            let decoded = match decode(&mut known.decoder, group.iter().map(|(_, b)| *b)) {
                Ok(all) => Group { batches: all, rows: group.iter().map(|(i, _)| *i).collect(), rejected: Vec::new() },
                Err(_) => {
                    let (one_by_one, left) = decode_one_by_one(id, &group, fresh)?;
                    known.decoder = left;
                    one_by_one
                }
            };
            for b in &decoded.batches {
                batches.push(conform(&self.target, b)?);
            }
            rows.extend(decoded.rows);
            rejected.extend(decoded.rejected);
        }
        let batch = concat_batches(&self.target, &batches).context("joining the Avro rows")?;
        Ok(Read { batch, rows, rejected })
    }

    /// Ask the registry once for the schema of writer `id` and record what
    /// reads its records, or why they cannot be read.
    async fn learn(&mut self, id: u32) -> Result<()> {
        if self.writers.contains_key(&id) {
            return Ok(());
        }
        let found = match &self.registry {
            None => Err(format!("Avro record of schema id {id}, but no schema registry is configured")),
            Some(registry) => match registry.schema(id).await {
                Ok(schema) => Ok(schema.to_string()),
                Err(e) if matches!(e.downcast_ref(), Some(RegistryError::UnknownId(_))) => Err(format!("{e}")),
                Err(e) => return Err(e),
            },
        };
        let known = found.and_then(|schema| {
            let decoder = decoder(&self.reader_schema, id, &schema)?;
            Ok(Known { schema, decoder })
        });
        self.writers.insert(id, known);
        Ok(())
    }
}

/// One writer's records read: batches of rows, their inputs, the rejected.
struct Group {
    batches: Vec<RecordBatch>,
    rows: Vec<usize>,
    rejected: Vec<(usize, String)>,
}

/// A decoder of records written with `writer` (registry id `id`) as `reader`.
fn decoder(reader: &str, id: u32, writer: &str) -> std::result::Result<Decoder, String> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store.set(Fingerprint::Id(id), AvroSchema::new(writer.to_owned())).map_err(|e| e.to_string())?;
    ReaderBuilder::new()
        .with_writer_schema_store(store)
        .with_reader_schema(AvroSchema::new(reader.to_owned()))
        .build_decoder()
        .map_err(|e| format!("schema id {id} cannot be read as the expected schema: {e}"))
}

/// A group one of whose records failed, read one record at a time: a failed
/// record leaves the decoder mid-row, so a fresh one reads the next. The
/// rows, and a clean decoder to keep.
fn decode_one_by_one(
    id: u32,
    group: &[(usize, &[u8])],
    fresh: impl Fn() -> Result<Decoder>,
) -> Result<(Group, Decoder)> {
    let (mut batches, mut rows, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    let mut decoder = fresh()?;
    for &(i, bytes) in group {
        match decode(&mut decoder, std::iter::once(bytes)) {
            Ok(one) => {
                batches.extend(one);
                rows.push(i);
            }
            Err(why) => {
                rejected.push((i, format!("undecodable Avro (schema id {id}): {why}")));
                decoder = fresh()?;
            }
        }
    }
    Ok((Group { batches, rows, rejected }, decoder))
}

/// `batch` as the target schema, column by name (the Avro side names its
/// records in field metadata, and a pruned reader schema leaves columns out:
/// those come out null, as the JSON decoder leaves the leaves nobody reads).
fn conform(target: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let columns = target
        .fields()
        .iter()
        .map(|field| fit(batch.column_by_name(field.name()), field, n))
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("casting Avro rows to the expected columns")?;
    RecordBatch::try_new(target.clone(), columns).context("casting Avro rows to the expected columns")
}

/// `column` (None: absent) as `field`'s type: a struct child by child, by name.
fn fit(column: Option<&ArrayRef>, field: &Field, n: usize) -> std::result::Result<ArrayRef, ArrowError> {
    let Some(column) = column else { return Ok(new_null_array(field.data_type(), n)) };
    let (DataType::Struct(children), Some(read)) = (field.data_type(), column.as_any().downcast_ref::<StructArray>())
    else {
        return cast(column, field.data_type());
    };
    let arrays = children.iter().map(|c| fit(read.column_by_name(c.name()), c, n)).collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(StructArray::try_new(children.clone(), arrays, read.nulls().cloned())?))
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
