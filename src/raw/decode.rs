//! Raw randomuser records (JSON bytes) to one Arrow batch, against an explicit
//! schema. A record that cannot be decoded, or lacks a valid `login.uuid`, is
//! set aside with its reason; its neighbours go on.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Builder, NullBufferBuilder, RecordBatch, RecordBatchOptions, StringBuilder, StructArray,
    new_null_array,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;

use super::json::{self, Fault, Leaf, Shape, Slots, Value, truncate};

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

/// Decodes raw records in one pass each (`json::read`) straight into Arrow
/// builders: a record is appended only once it is known to be good, so a bad
/// one costs its neighbours nothing.
pub struct RawDecoder {
    schema: SchemaRef,
    shape: Shape,
    /// The slot of `login.uuid`, every row's key.
    uuid: Option<usize>,
    /// By slot: whether its column is filled (the SQL reads it) or left null.
    filled: Vec<bool>,
}

impl Default for RawDecoder {
    fn default() -> Self {
        Self::reading(|_| true)
    }
}

impl RawDecoder {
    /// A decoder that fills the columns of the leaves `reads` says are read
    /// (by dotted path, `login.uuid`) and leaves the others null; it still
    /// reads and checks every field of every record.
    pub fn reading(reads: impl Fn(&str) -> bool) -> Self {
        let schema = raw_schema();
        let shape = Shape::of(schema.fields());
        let uuid = shape.slot("login.uuid");
        let filled = shape.paths().map(reads).collect();
        Self { schema, shape, uuid, filled }
    }

    /// Whether the leaf at `path` is filled: read, the row's key, or one this
    /// decoder does not know (so nothing it is given is dropped unread).
    pub fn fills(&self, path: &str) -> bool {
        self.shape.slot(path).is_none_or(|s| self.filled[s] || Some(s) == self.uuid)
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Decode `payloads` (None = a record without a value).
    pub fn decode(&self, payloads: &[Option<&[u8]>]) -> Result<Decoded, ArrowError> {
        let n = payloads.len();
        let mut columns = Columns::new(&self.shape, &self.filled, n);
        let mut record = self.shape.record();
        let (mut rows, mut ids, mut rejected) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::new());
        let mut text = String::new();
        for (i, payload) in payloads.iter().enumerate() {
            let good = self.read(*payload, &mut record).and_then(|json| Ok((json, self.id(json, &record)?)));
            match good {
                Ok((json, id)) => {
                    columns.append(json, &record, &mut text);
                    rows.push(i);
                    ids.push(id);
                }
                Err(why) => rejected.push((i, why)),
            }
        }
        let batch = columns.finish(&self.schema)?;
        Ok(Decoded { batch, rows, ids, rejected })
    }

    /// Read one record into `record`: its text, or the reason it is not a good one.
    fn read<'a>(&self, payload: Option<&'a [u8]>, record: &mut Slots) -> Result<&'a str, String> {
        let Some(bytes) = payload else { return Err("null payload (record has no value)".into()) };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err("empty payload".into());
        }
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(format!("record too large: {} bytes (limit {MAX_RECORD_BYTES})", bytes.len()));
        }
        // Checked once for the whole record: its values are then slices of it.
        // SIMD validation (~0.1 instructions a byte against std's ~1.3); std's
        // again only to say where a bad record goes wrong.
        let json = simdutf8::basic::from_utf8(bytes)
            .or_else(|_| std::str::from_utf8(bytes))
            .map_err(|e| format!("invalid UTF-8: {e}"))?;
        match json::read(&self.shape, bytes, record) {
            Ok(()) => Ok(json),
            Err(Fault::Malformed(why)) => Err(format!("malformed JSON: {why}")),
            Err(Fault::NotAnObject) => Err("not a JSON object".into()),
            Err(Fault::WrongType(why)) => Err(format!("wrong type: {why}")),
        }
    }

    /// The record's `login.uuid`, if it has a valid one.
    fn id(&self, json: &str, record: &Slots) -> Result<String, String> {
        let mut buf = String::new();
        let id = self.uuid.and_then(|slot| text_of(record.values[slot], json, &mut buf));
        checked_id(id)
    }
}

/// A record's `login.uuid` as its row's id, or why it has none: in the
/// spelling the rows' ids get (`encode`), so each row finds its input by id.
pub fn checked_id(id: Option<&str>) -> Result<String, String> {
    let Some(id) = id else { return Err("missing login.uuid".to_owned()) };
    match crate::row::canonical_id(id) {
        Some(id) => Ok(id.into_owned()),
        None => Err(format!("login.uuid is not a UUID: {:?}", truncate(id, 64))),
    }
}

/// A value's text (None if null): a string's, its escapes decoded into `buf`,
/// or a number or boolean as written.
fn text_of<'a>(value: Value, json: &'a str, buf: &'a mut String) -> Option<&'a str> {
    let (start, end, escaped) = match value {
        Value::Null => return None,
        Value::Str { start, end, escaped } => (start as usize, end as usize, escaped),
        Value::Raw { start, end } => (start as usize, end as usize, false),
    };
    if escaped {
        json::unescape(&json.as_bytes()[start..end], buf);
        return Some(buf.as_str());
    }
    // A value's bounds are ASCII quotes or delimiters: char boundaries (`get`
    // checks only that, not the text between, which is valid UTF-8 already).
    json.get(start..end)
}

enum Builder {
    Text(StringBuilder),
    Int(Int64Builder),
}

/// The batch being built: a builder per leaf filled, a validity per object.
struct Columns {
    rows: usize,
    /// By slot; `None` for a leaf left null.
    leaves: Vec<Option<Builder>>,
    /// By object number; the root (0) is every row, so it has none.
    objects: Vec<NullBufferBuilder>,
}

impl Columns {
    fn new(shape: &Shape, filled: &[bool], n: usize) -> Self {
        let leaves = shape
            .leaves
            .iter()
            .zip(filled)
            .map(|(kind, filled)| {
                filled.then(|| match kind {
                    Leaf::Text => Builder::Text(StringBuilder::with_capacity(n, n * 16)),
                    Leaf::Int => Builder::Int(Int64Builder::with_capacity(n)),
                })
            })
            .collect();
        let objects = (1..shape.objects.len()).map(|_| NullBufferBuilder::new(n)).collect();
        Self { rows: 0, leaves, objects }
    }

    fn append(&mut self, json: &str, record: &Slots, buf: &mut String) {
        for (builder, value) in self.leaves.iter_mut().zip(&record.values) {
            match builder {
                Some(Builder::Text(b)) => b.append_option(text_of(*value, json, buf)),
                Some(Builder::Int(b)) => {
                    b.append_option(text_of(*value, json, buf).and_then(|t| json::int(t.as_bytes())))
                }
                None => {}
            }
        }
        for (validity, held) in self.objects.iter_mut().zip(&record.objects[1..]) {
            validity.append(*held);
        }
        self.rows += 1;
    }

    fn finish(self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let (rows, mut leaves, mut objects) = (self.rows, self.leaves.into_iter(), self.objects.into_iter());
        let columns = build(schema.fields(), rows, &mut leaves, &mut objects)?;
        RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
    }
}

/// The arrays of `fields`, taking leaves and object validities in the order
/// `Shape::of` numbered them (depth first).
fn build(
    fields: &Fields,
    rows: usize,
    leaves: &mut impl Iterator<Item = Option<Builder>>,
    objects: &mut impl Iterator<Item = NullBufferBuilder>,
) -> Result<Vec<ArrayRef>, ArrowError> {
    let missing = || ArrowError::InvalidArgumentError("decode: the builders do not match the schema".into());
    let mut arrays = Vec::with_capacity(fields.len());
    for f in fields {
        let array: ArrayRef = match f.data_type() {
            DataType::Struct(inner) => {
                let mut validity = objects.next().ok_or_else(missing)?;
                let children = build(inner, rows, leaves, objects)?;
                Arc::new(StructArray::try_new_with_length(inner.clone(), children, validity.finish(), rows)?)
            }
            DataType::Utf8 | DataType::Int64 => match leaves.next().ok_or_else(missing)? {
                Some(Builder::Text(mut b)) => Arc::new(b.finish()),
                Some(Builder::Int(mut b)) => Arc::new(b.finish()),
                None => new_null_array(f.data_type(), rows),
            },
            other => new_null_array(other, rows),
        };
        arrays.push(array);
    }
    Ok(arrays)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"gender":"female","name":{"first":"Zoë","last":"O'Brien"},"location":{"street":{"number":7,"name":"Main St"},"postcode":90210},"login":{"uuid":"7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6"}}"#;

    fn decode(inputs: &[Option<&str>]) -> Decoded {
        let payloads: Vec<Option<&[u8]>> = inputs.iter().map(|p| p.map(str::as_bytes)).collect();
        RawDecoder::default().decode(&payloads).unwrap()
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
        let d = RawDecoder::default()
            .decode(&[Some(huge.as_bytes()), Some(deep.as_bytes()), Some(bad_utf8), Some(GOOD.as_bytes())])
            .unwrap();
        assert_eq!(d.rows, vec![3]);
        assert!(d.rejected[0].1.starts_with("record too large"));
        assert!(d.rejected[1].1.starts_with("malformed JSON"));
        assert!(d.rejected[2].1.starts_with("invalid UTF-8"), "{:?}", d.rejected[2]);
    }
}
