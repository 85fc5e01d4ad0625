//! Raw randomuser records (JSON bytes) to one Arrow batch, against an explicit
//! schema. A record that cannot be decoded, or lacks a valid `login.uuid`, is
//! set aside with its reason; its neighbours go on.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray, StructArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow_json::ReaderBuilder;

/// Largest payload accepted; anything bigger goes to the DLQ unparsed.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn object(name: &str, fields: Vec<Field>) -> Field {
    Field::new(name, DataType::Struct(Fields::from(fields)), true)
}

/// The raw record as randomuser.me serves it (API version 1.4). Text fields
/// accept numbers too (coerced to their decimal text): the API sends
/// `postcode` and `street.number` as either.
pub fn raw_schema() -> SchemaRef {
    let dated = |name: &str| object(name, vec![text("date"), Field::new("age", DataType::Int64, true)]);
    Arc::new(Schema::new(vec![
        text("gender"),
        object("name", vec![text("title"), text("first"), text("last")]),
        object(
            "location",
            vec![
                object("street", vec![text("number"), text("name")]),
                text("city"),
                text("state"),
                text("country"),
                text("postcode"),
                object("coordinates", vec![text("latitude"), text("longitude")]),
                object("timezone", vec![text("offset"), text("description")]),
            ],
        ),
        text("email"),
        object(
            "login",
            ["uuid", "username", "password", "salt", "md5", "sha1", "sha256"].into_iter().map(text).collect(),
        ),
        dated("dob"),
        dated("registered"),
        text("phone"),
        text("cell"),
        object("id", vec![text("name"), text("value")]),
        object("picture", vec![text("large"), text("medium"), text("thumbnail")]),
        text("nat"),
    ]))
}

/// What decoding a batch gives: the good rows (in input order) with the input
/// index of each, and the rejected inputs with their reasons.
#[derive(Debug)]
pub struct Decoded {
    pub batch: RecordBatch,
    /// `rows[i]` is the index, in the input slice, of `batch` row i.
    pub rows: Vec<usize>,
    /// `ids[i]` is the `login.uuid` of `batch` row i.
    pub ids: Vec<String>,
    pub rejected: Vec<(usize, String)>,
}

pub struct RawDecoder {
    schema: SchemaRef,
}

impl Default for RawDecoder {
    fn default() -> Self {
        Self { schema: raw_schema() }
    }
}

impl RawDecoder {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Decode `payloads` (None = a record without a value).
    pub fn decode(&self, payloads: &[Option<&[u8]>]) -> Decoded {
        let mut rejected = Vec::new();
        let mut candidates = Vec::with_capacity(payloads.len());
        for (i, p) in payloads.iter().enumerate() {
            match precheck(*p) {
                Ok(bytes) => candidates.push((i, bytes)),
                Err(why) => rejected.push((i, why)),
            }
        }
        // Fast path: the whole batch in one decoder. Each candidate is known to
        // be exactly one JSON object, so records cannot run into each other.
        let (batch, rows) = match self.decode_all(candidates.iter().map(|(_, b)| *b)) {
            Ok(batch) if batch.num_rows() == candidates.len() => (batch, candidates.iter().map(|(i, _)| *i).collect()),
            // Some record has a wrong type: find it without losing the others.
            _ => {
                let mut good = Vec::new();
                let mut rows = Vec::new();
                for (i, bytes) in &candidates {
                    match self.decode_all(std::iter::once(*bytes)) {
                        Ok(b) if b.num_rows() == 1 => {
                            good.push(b);
                            rows.push(*i);
                        }
                        Ok(_) => rejected.push((*i, "not a single JSON object".into())),
                        Err(e) => rejected.push((*i, format!("wrong type: {e}"))),
                    }
                }
                let batch =
                    concat_batches(&self.schema, &good).unwrap_or_else(|_| RecordBatch::new_empty(self.schema.clone()));
                (batch, rows)
            }
        };
        let (batch, rows, ids) = check_uuids(batch, rows, &mut rejected);
        rejected.sort_by_key(|(i, _)| *i);
        Decoded { batch, rows, ids, rejected }
    }

    fn decode_all<'a>(
        &self,
        records: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            .with_coerce_primitive(true)
            .with_batch_size(records.len().max(1))
            .build_decoder()?;
        for r in records {
            let mut rest = r;
            while !rest.is_empty() {
                let n = decoder.decode(rest)?;
                if n == 0 {
                    break;
                }
                rest = &rest[n..];
            }
            decoder.decode(b"\n")?;
        }
        Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }
}

/// Reject what is not exactly one JSON object, before Arrow sees it.
fn precheck(payload: Option<&[u8]>) -> Result<&[u8], String> {
    let Some(bytes) = payload else { return Err("null payload (record has no value)".into()) };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("empty payload".into());
    }
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(format!("record too large: {} bytes (limit {MAX_RECORD_BYTES})", bytes.len()));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(format!("invalid UTF-8: {e}"));
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(format!("malformed JSON: {e}"));
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(bytes),
        _ => Err("not a JSON object".into()),
    }
}

/// Keep the rows whose `login.uuid` is present and a valid UUID.
fn check_uuids(
    batch: RecordBatch,
    rows: Vec<usize>,
    rejected: &mut Vec<(usize, String)>,
) -> (RecordBatch, Vec<usize>, Vec<String>) {
    let uuids = batch
        .column_by_name("login")
        .and_then(|c| c.as_any().downcast_ref::<StructArray>())
        .and_then(|login| login.column_by_name("uuid").cloned());
    let uuids = uuids.as_ref().and_then(|c| c.as_any().downcast_ref::<StringArray>());
    let mut keep = Vec::with_capacity(batch.num_rows());
    let mut ids = Vec::with_capacity(batch.num_rows());
    for (row, input) in rows.iter().enumerate() {
        let reason = match uuids {
            Some(u) if u.is_valid(row) => match uuid::Uuid::try_parse(u.value(row)) {
                Ok(_) => {
                    ids.push(u.value(row).to_owned());
                    None
                }
                Err(_) => Some(format!("login.uuid is not a UUID: {:?}", truncate(u.value(row), 64))),
            },
            _ => Some("missing login.uuid".to_owned()),
        };
        if let Some(r) = &reason {
            rejected.push((*input, r.clone()));
        }
        keep.push(reason.is_none());
    }
    if keep.iter().all(|k| *k) {
        return (batch, rows, ids);
    }
    let rows = rows.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(r, _)| r).collect();
    let batch = filter_record_batch(&batch, &BooleanArray::from(keep))
        .unwrap_or_else(|_| RecordBatch::new_empty(batch.schema()));
    (batch, rows, ids)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"gender":"female","name":{"first":"Zoë","last":"O'Brien"},"location":{"street":{"number":7,"name":"Main St"},"postcode":90210},"login":{"uuid":"7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6"}}"#;

    fn decode(inputs: &[Option<&str>]) -> Decoded {
        let payloads: Vec<Option<&[u8]>> = inputs.iter().map(|p| p.map(str::as_bytes)).collect();
        RawDecoder::default().decode(&payloads)
    }

    #[test]
    fn good_records_decode_with_numbers_as_text() {
        let d = decode(&[Some(GOOD), Some(GOOD)]);
        assert_eq!(d.batch.num_rows(), 2);
        assert_eq!(d.rows, vec![0, 1]);
        assert!(d.rejected.is_empty());
    }

    #[test]
    fn each_bad_record_is_rejected_with_a_reason_and_neighbours_survive() {
        let wrong_type = r#"{"login":{"uuid":"7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6"},"name":"just a string"}"#;
        let inputs = [
            Some(GOOD),
            Some(r#"{"login":{"uuid":"0b6d2f7e-5c1a"#),
            Some("[1,2,3]"),
            Some("null"),
            Some(""),
            None,
            Some(r#"{"login":{"username":"x"}}"#),
            Some(r#"{"login":{"uuid":"not-a-uuid"}}"#),
            Some(wrong_type),
            Some(GOOD),
        ];
        let d = decode(&inputs);
        assert_eq!(d.rows, vec![0, 9], "{:?}", d.rejected);
        let reasons: Vec<(usize, &str)> = d.rejected.iter().map(|(i, r)| (*i, r.as_str())).collect();
        let expect = [
            (1, "malformed JSON"),
            (2, "not a JSON object"),
            (3, "not a JSON object"),
            (4, "empty payload"),
            (5, "null payload"),
            (6, "missing login.uuid"),
            (7, "login.uuid is not a UUID"),
            (8, "wrong type"),
        ];
        assert_eq!(reasons.len(), expect.len(), "{reasons:?}");
        for ((i, r), (ei, er)) in reasons.iter().zip(expect) {
            assert_eq!(*i, ei);
            assert!(r.starts_with(er), "record {i}: {r:?} should start with {er:?}");
        }
    }

    #[test]
    fn huge_and_deep_and_invalid_utf8_records_are_rejected() {
        let huge = format!(r#"{{"login":{{"uuid":"x"}},"pad":"{}"}}"#, "a".repeat(MAX_RECORD_BYTES));
        let deep = format!("{}{}", "{\"a\":".repeat(1000), "}".repeat(1000));
        let bad_utf8: &[u8] =
            b"{\"gender\":\"\xff\xfe\",\"login\":{\"uuid\":\"7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6\"}}";
        let d = RawDecoder::default().decode(&[
            Some(huge.as_bytes()),
            Some(deep.as_bytes()),
            Some(bad_utf8),
            Some(GOOD.as_bytes()),
        ]);
        assert_eq!(d.rows, vec![3]);
        assert!(d.rejected[0].1.starts_with("record too large"));
        assert!(d.rejected[1].1.starts_with("malformed JSON"));
        assert!(d.rejected[2].1.starts_with("invalid UTF-8"), "{:?}", d.rejected[2]);
    }
}
