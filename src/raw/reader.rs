//! Raw records in either format, in one batch: JSON through
//! `decode::RawDecoder`, framed Avro (the first byte tells) through
//! `avro::Reader` as schemas/users_raw.avsc, whatever version of it a
//! record was written with; the rows of both in input order, each with its id.

use anyhow::{Context, Result};
use arrow::array::{Array, BooleanArray, RecordBatch, StringArray, StructArray, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};

use super::decode::{Decoded, RawDecoder, checked_id};
use crate::avro::{Reader, USERS_RAW, pruned};
use crate::registry::{Registry, wire};

pub struct RawReader {
    json: RawDecoder,
    avro: Reader,
}

impl RawReader {
    /// Reads JSON with `json`, Avro with the registry's schemas (none: Avro
    /// records go to the DLQ saying so), of which only the leaves `json`
    /// fills (what the SQL reads).
    pub fn new(json: RawDecoder, registry: Option<Registry>) -> Result<Self> {
        let schema = pruned(USERS_RAW, |path| json.fills(path))?;
        let avro = Reader::new(registry, &schema, json.schema());
        Ok(Self { json, avro })
    }

    /// JSON alone (no payload is framed) costs what it did before Avro.
    pub fn decode_json(&self, payloads: &[Option<&[u8]>]) -> Result<Decoded> {
        self.json.decode(payloads).context("building the batch of decoded records")
    }

    /// Decode `payloads` (None = a record without a value).
    pub async fn decode(&mut self, payloads: &[Option<&[u8]>]) -> Result<Decoded> {
        if !payloads.iter().any(|p| p.is_some_and(wire::is_framed)) {
            return self.decode_json(payloads);
        }
        let (framed, plain): (Vec<usize>, Vec<usize>) =
            (0..payloads.len()).partition(|i| payloads[*i].is_some_and(wire::is_framed));
        let json_payloads: Vec<Option<&[u8]>> = plain.iter().map(|i| payloads[*i]).collect();
        let json = self.decode_json(&json_payloads)?;
        let records: Vec<(usize, &[u8])> = framed.iter().map(|i| (*i, payloads[*i].unwrap_or_default())).collect();
        let avro = self.avro.read(&records).await?;

        let mut rows: Vec<usize> = json.rows.iter().map(|k| plain[*k]).collect();
        let mut rejected: Vec<(usize, String)> = json.rejected.into_iter().map(|(k, why)| (plain[k], why)).collect();
        rejected.extend(avro.rejected);
        let (avro_batch, avro_rows, avro_ids) = with_ids(avro.batch, avro.rows, &mut rejected)?;
        rows.extend(avro_rows);
        let mut ids = json.ids;
        ids.extend(avro_ids);
        let batch =
            concat_batches(&self.json.schema(), [&json.batch, &avro_batch]).context("joining JSON and Avro rows")?;
        rejected.sort_by_key(|(i, _)| *i);
        let Some(order) = input_order(&rows) else { return Ok(Decoded { batch, rows, ids, rejected }) };
        let batch = take_record_batch(&batch, &order)?;
        let rows = order.values().iter().map(|&k| rows[k as usize]).collect();
        let ids = order.values().iter().map(|&k| std::mem::take(&mut ids[k as usize])).collect();
        Ok(Decoded { batch, rows, ids, rejected })
    }
}

/// The rows that have a valid `login.uuid`, with it; the others rejected as
/// the JSON path rejects them.
fn with_ids(
    batch: RecordBatch,
    rows: Vec<usize>,
    rejected: &mut Vec<(usize, String)>,
) -> Result<(RecordBatch, Vec<usize>, Vec<String>)> {
    let login = batch.column_by_name("login").and_then(|c| c.as_any().downcast_ref::<StructArray>());
    let uuid = login.and_then(|l| l.column_by_name("uuid")).and_then(|c| c.as_any().downcast_ref::<StringArray>());
    let (mut keep, mut good_rows, mut ids) = (Vec::with_capacity(rows.len()), Vec::new(), Vec::new());
    for (n, input) in rows.into_iter().enumerate() {
        let present = login.is_some_and(|l| l.is_valid(n));
        let id = uuid.filter(|u| present && u.is_valid(n)).map(|u| u.value(n));
        match checked_id(id) {
            Ok(id) => {
                keep.push(true);
                good_rows.push(input);
                ids.push(id);
            }
            Err(why) => {
                keep.push(false);
                rejected.push((input, why));
            }
        }
    }
    let batch = if keep.iter().all(|k| *k) { batch } else { filter_record_batch(&batch, &BooleanArray::from(keep))? };
    Ok((batch, good_rows, ids))
}

/// The order that puts rows numbered by input index `rows` back in input
/// order, for `take`; `None` when they are in it already.
fn input_order(rows: &[usize]) -> Option<UInt32Array> {
    if rows.is_sorted() {
        return None;
    }
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    order.sort_by_key(|&k| rows[k as usize]);
    Some(UInt32Array::from(order))
}
