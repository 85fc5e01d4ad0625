//! SQL output batches to one JSON object (or one framed Avro record) per row,
//! keyed by its `id`.

use std::borrow::Cow;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use arrow_json::writer::{LineDelimited, WriterBuilder};

use crate::raw::json::plain_run;

/// The clean rows of a batch: each row's payload (JSON, or a framed Avro
/// record) and its key (`id`), every one in one buffer. A `Vec` for each row's JSON and another for its id were two
/// allocations and two frees a row, a thousand or more of each a batch: more than glibc's
/// per-thread cache holds, so each went the slow way (issue 19).
#[derive(Debug, Default)]
pub struct Rows {
    payloads: Vec<u8>,
    ids: String,
    /// Where each row's payload ends in `payloads`, and its id in `ids`.
    ends: Vec<(usize, usize)>,
    /// Rows the output format cannot hold (a timestamp Avro cannot), by id, with why.
    pub refused: Vec<(String, String)>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Row `i`: its id and its payload.
    pub fn get(&self, i: usize) -> (&str, &[u8]) {
        let (start, id_start) = if i == 0 { (0, 0) } else { self.ends[i - 1] };
        let (end, id_end) = self.ends[i];
        (&self.ids[id_start..id_end], &self.payloads[start..end])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Close the row whose payload was written since the last one, with its id.
    fn end_row(&mut self, id: &str) {
        self.ids.push_str(id);
        self.ends.push((self.payloads.len(), self.ids.len()));
    }

    /// Add `other`'s rows after these.
    pub fn append(&mut self, other: &Rows) {
        let (payloads, ids) = (self.payloads.len(), self.ids.len());
        self.payloads.extend_from_slice(&other.payloads);
        self.ids.push_str(&other.ids);
        self.ends.extend(other.ends.iter().map(|(p, i)| (p + payloads, i + ids)));
        self.refused.extend(other.refused.iter().cloned());
    }

    /// Rows from (id, JSON) pairs (tests).
    #[cfg(test)]
    pub fn of(rows: &[(&str, &str)]) -> Self {
        let mut out = Rows::default();
        for (id, json) in rows {
            out.payloads.extend_from_slice(json.as_bytes());
            out.end_row(id);
        }
        out
    }
}

/// Every row of `batches`, nulls written out explicitly so each row has every field.
pub fn rows(batches: &[RecordBatch]) -> Result<Rows> {
    let mut out = Rows::default();
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let (batch, ids) = keyed(batch)?;
        out.payloads.reserve(batch.num_rows() * 512);
        match texts(&batch) {
            Some(columns) => text_rows(&batch, &columns, &ids, &mut out),
            None => any_rows(&batch, &ids, &mut out)?,
        }
    }
    Ok(out)
}

/// Every row of `batches` as a framed Avro record of `writer`'s schema
/// (`avro::typed`); a row whose values that schema cannot hold is refused.
pub fn avro_rows(batches: &[RecordBatch], writer: &mut crate::avro::Writer) -> Result<Rows> {
    let mut out = Rows::default();
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let (batch, ids) = keyed(batch)?;
        let (typed, refused) = crate::avro::typed::batch(&batch, writer.schema())?;
        let refused_rows: std::collections::HashSet<usize> = refused.iter().map(|(row, _)| *row).collect();
        let kept = (0..ids.len()).filter(|row| !refused_rows.contains(row)).map(|row| ids.value(row));
        for (record, id) in writer.encode(&typed)?.iter().zip(kept) {
            out.payloads.extend_from_slice(&record);
            out.end_row(id);
        }
        out.refused.extend(refused.into_iter().map(|(row, why)| (ids.value(row).to_owned(), why)));
    }
    Ok(out)
}

/// The batch with its ids in one spelling, and the ids as text; an error if
/// the SQL made no `id` column or a row without an id.
fn keyed(batch: &RecordBatch) -> Result<(RecordBatch, StringArray)> {
    let column = batch.schema().index_of("id").ok().context("the SQL output has no `id` column")?;
    let ids = cast(batch.column(column), &DataType::Utf8).context("reading `id` as text")?;
    let ids = ids.as_any().downcast_ref::<StringArray>().context("reading `id` as text")?;
    if let Some(row) = (0..batch.num_rows()).find(|r| ids.is_null(*r)) {
        anyhow::bail!("the SQL produced a row with a null `id` (row {row}); every row needs one (it is the row's key)");
    }
    Ok(canonical_ids(batch, column, ids)?.unwrap_or_else(|| (batch.clone(), ids.clone())))
}

/// The batch with its `id` column in one spelling (`crate::row::canonical_id`),
/// if any id is a UUID spelled otherwise; `None` when every one is already
/// canonical (or not a UUID, which the load dead-letters).
fn canonical_ids(batch: &RecordBatch, column: usize, ids: &StringArray) -> Result<Option<(RecordBatch, StringArray)>> {
    fn respell(id: &str) -> Option<String> {
        match crate::row::canonical_id(id) {
            Some(Cow::Owned(canonical)) => Some(canonical),
            _ => None,
        }
    }
    if !ids.iter().flatten().any(|id| respell(id).is_some()) {
        return Ok(None);
    }
    let fixed: StringArray = ids.iter().map(|id| id.map(|id| respell(id).unwrap_or_else(|| id.to_owned()))).collect();
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    // A text id keeps its field (an Avro writer checks the batch's fields against its own).
    if fields[column].data_type() != &DataType::Utf8 {
        fields[column] = Field::new("id", DataType::Utf8, false);
    }
    let mut columns = batch.columns().to_vec();
    columns[column] = Arc::new(fixed.clone());
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).context("respelling the ids")?;
    Ok(Some((batch, fixed)))
}

/// A text column, whichever of Arrow's string layouts it has.
enum Text<'a> {
    Utf8(&'a StringArray),
    Large(&'a arrow::array::LargeStringArray),
    View(&'a arrow::array::StringViewArray),
}

impl Text<'_> {
    fn get(&self, row: usize) -> Option<&str> {
        match self {
            Text::Utf8(a) => a.is_valid(row).then(|| a.value(row)),
            Text::Large(a) => a.is_valid(row).then(|| a.value(row)),
            Text::View(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

/// The columns of `batch` if every one is text (the built-in SQL's output).
fn texts(batch: &RecordBatch) -> Option<Vec<Text<'_>>> {
    batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8 => Some(Text::Utf8(c.as_string::<i32>())),
            DataType::LargeUtf8 => Some(Text::Large(c.as_string::<i64>())),
            DataType::Utf8View => Some(Text::View(c.as_string_view())),
            _ => None,
        })
        .collect()
}

/// Rows of text columns, written straight from the arrays: what arrow-json's
/// writer writes, without its per-value dispatch (a third of the encoding).
fn text_rows(batch: &RecordBatch, columns: &[Text<'_>], ids: &StringArray, out: &mut Rows) {
    let keys: Vec<Vec<u8>> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let mut key = Vec::new();
            quoted(&mut key, f.name());
            key.push(b':');
            key
        })
        .collect();
    for row in 0..batch.num_rows() {
        let json = &mut out.payloads;
        json.push(b'{');
        for (k, (key, column)) in keys.iter().zip(columns).enumerate() {
            if k > 0 {
                json.push(b',');
            }
            json.extend_from_slice(key);
            match column.get(row) {
                Some(text) => quoted(json, text),
                None => json.extend_from_slice(b"null"),
            }
        }
        json.push(b'}');
        out.end_row(ids.value(row));
    }
}

/// `text` as a JSON string, escaped as serde_json (and so arrow-json) does.
fn quoted(out: &mut Vec<u8>, text: &str) {
    let mut rest = text.as_bytes();
    out.push(b'"');
    loop {
        let run = plain_run(rest);
        out.extend_from_slice(&rest[..run]);
        let Some((&c, tail)) = rest[run..].split_first() else { break };
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
        }
        rest = tail;
    }
    out.push(b'"');
}

/// Rows of any columns, by arrow-json's writer.
fn any_rows(batch: &RecordBatch, ids: &StringArray, out: &mut Rows) -> Result<()> {
    let mut buf = Vec::with_capacity(batch.num_rows() * 512);
    let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(&mut buf);
    writer.write(batch).context("encoding rows as JSON")?;
    writer.finish().context("encoding rows as JSON")?;
    drop(writer);
    // JSON text never holds a raw newline, so lines are rows.
    for (row, line) in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        out.payloads.extend_from_slice(line);
        out.end_row(ids.value(row));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array, StringViewArray};

    use super::*;

    #[test]
    fn text_rows_are_what_arrow_json_writes() {
        let tricky = ["plain", "quote \" back \\ slash", "new\nline\ttab\r\u{8}\u{c}\u{1}\u{1f}", "Zoë 😀", ""];
        let ids: Vec<Option<&str>> =
            (0..tricky.len() + 1).map(|_| Some("7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6")).collect();
        let mut values: Vec<Option<&str>> = tricky.iter().map(|t| Some(*t)).collect();
        values.push(None);
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(StringArray::from(ids))),
            ("we\"ird key", Arc::new(StringArray::from(values.clone()))),
            ("view", Arc::new(StringViewArray::from(values))),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        assert!(texts(&batch).is_some());
        let ids = batch.column(0).as_string::<i32>();
        let (mut fast, mut general) = (Rows::default(), Rows::default());
        text_rows(&batch, &texts(&batch).unwrap(), ids, &mut fast);
        any_rows(&batch, ids, &mut general).unwrap();
        assert_eq!(fast.iter().collect::<Vec<_>>(), general.iter().collect::<Vec<_>>());
        assert_eq!(fast.len(), tricky.len() + 1);
    }

    #[test]
    fn ids_leave_in_one_spelling_key_and_json_alike() {
        let ids = ["7E1F0C3A-2B4D-4C6E-8F10-A1B2C3D4E5F6", "7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6", "not-a-uuid"];
        for view in [false, true] {
            let column: ArrayRef = if view {
                Arc::new(StringViewArray::from(ids.to_vec()))
            } else {
                Arc::new(StringArray::from(ids.to_vec()))
            };
            let batch = RecordBatch::try_from_iter([("id", column)]).unwrap();
            let got = rows(&[batch]).unwrap();
            let got: Vec<(&str, &str)> =
                got.iter().map(|(id, json)| (id, std::str::from_utf8(json).unwrap())).collect();
            let lower = "7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6";
            assert_eq!(
                got,
                [
                    (lower, format!(r#"{{"id":"{lower}"}}"#).as_str()),
                    (lower, format!(r#"{{"id":"{lower}"}}"#).as_str()),
                    ("not-a-uuid", r#"{"id":"not-a-uuid"}"#),
                ]
            );
        }
    }

    #[test]
    fn appended_rows_keep_each_id_with_its_json() {
        let mut rows = Rows::of(&[("a", r#"{"id":"a"}"#), ("bb", r#"{"id":"bb","x":1}"#)]);
        rows.append(&Rows::of(&[("ccc", r#"{"id":"ccc"}"#)]));
        rows.append(&Rows::default());
        let got: Vec<(&str, &str)> = rows.iter().map(|(id, json)| (id, std::str::from_utf8(json).unwrap())).collect();
        assert_eq!(got, [("a", r#"{"id":"a"}"#), ("bb", r#"{"id":"bb","x":1}"#), ("ccc", r#"{"id":"ccc"}"#)]);
    }

    #[test]
    fn other_columns_go_through_arrow_json_and_a_null_id_is_an_error() {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(StringArray::from(vec![Some("a"), None]))),
            ("n", Arc::new(Int64Array::from(vec![1, 2]))),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        assert!(texts(&batch).is_none());
        let err = rows(std::slice::from_ref(&batch)).err().unwrap().to_string();
        assert!(err.contains("null `id`"), "{err}");
        let ok = batch.slice(0, 1);
        let got = rows(&[ok.clone(), ok]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got.get(1), ("a", br#"{"id":"a","n":1}"#.as_slice()), "each row's id and JSON, found again");
    }
}
