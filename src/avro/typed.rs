//! The row contract's types in Avro rows: a `Timestamp` column (RFC 3339 text
//! in JSON rows) is Avro's `timestamp-millis`, so Spark, Flink or Kafka
//! Connect read it as a timestamp (millis: the API's precision and Connect's
//! `Timestamp`), in a third of the bytes; the id, never null, is not optional.
//! A value that is not such a timestamp, or finer than a millisecond, leaves
//! its row out with the reason (the transform dead-letters it): never a null
//! or a rounded value in its place.

use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::row::{COLUMNS, Kind};

/// The Arrow type of a timestamp column in Avro rows (`timestamp-millis`).
fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()))
}

/// The kind of the contract's column `name`, if it is one.
fn kind(name: &str) -> Option<Kind> {
    COLUMNS.iter().find(|c| c.name == name).map(|c| c.kind)
}

/// Whether `field` is text (any of Arrow's string layouts).
fn is_text(field: &Field) -> bool {
    matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The schema Avro rows are written with, from the SQL's output `sql`: the
/// contract's timestamp columns made text as timestamps, the id required.
pub fn schema(sql: &Schema) -> Schema {
    let fields: Vec<Field> = sql
        .fields()
        .iter()
        .map(|f| match kind(f.name()) {
            Some(Kind::Timestamp) if is_text(f) => f.as_ref().clone().with_data_type(timestamp()),
            Some(Kind::Id) => f.as_ref().clone().with_nullable(false),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, sql.metadata().clone())
}

/// `batch` (the SQL's output, its ids checked) as `typed` (from `schema`):
/// the rows whose timestamps hold, and the others, by row, with the reason.
pub fn batch(batch: &RecordBatch, typed: &SchemaRef) -> Result<(RecordBatch, Vec<(usize, String)>)> {
    let mut refused: Vec<Option<String>> = vec![None; batch.num_rows()];
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (column, field) in batch.columns().iter().zip(typed.fields()) {
        let column = if field.data_type() == &timestamp() && column.data_type() != field.data_type() {
            millis(field.name(), column, &mut refused)?
        } else {
            column.clone()
        };
        columns.push(column);
    }
    let typed = RecordBatch::try_new(typed.clone(), columns).context("typing the rows for Avro")?;
    if refused.iter().all(Option::is_none) {
        return Ok((typed, Vec::new()));
    }
    let keep: BooleanArray = refused.iter().map(|r| Some(r.is_none())).collect();
    let kept = filter_record_batch(&typed, &keep).context("leaving out the rows Avro cannot hold")?;
    Ok((kept, refused.into_iter().enumerate().filter_map(|(row, why)| why.map(|w| (row, w))).collect()))
}

/// The text column `name` as milliseconds; a value that is not an RFC 3339
/// timestamp to the millisecond refuses its row (the first reason a row gets
/// is kept).
fn millis(name: &str, column: &ArrayRef, refused: &mut [Option<String>]) -> Result<ArrayRef> {
    let text = cast(column, &DataType::Utf8).with_context(|| format!("reading `{name}` as text"))?;
    let text = text.as_any().downcast_ref::<StringArray>().context("reading a text column")?;
    let values: TimestampMillisecondArray = text
        .iter()
        .zip(refused.iter_mut())
        .map(|(value, refused)| {
            let value = value?;
            match parse(value) {
                Ok(ms) => Some(ms),
                Err(why) => {
                    refused.get_or_insert_with(|| format!("`{name}` {value:?} {why}"));
                    None
                }
            }
        })
        .collect();
    Ok(Arc::new(values.with_timezone("+00:00")))
}

/// An RFC 3339 timestamp as milliseconds since the epoch.
fn parse(value: &str) -> std::result::Result<i64, &'static str> {
    let at = chrono::DateTime::parse_from_rfc3339(value).map_err(|_| "is not an RFC 3339 timestamp")?;
    if at.timestamp_subsec_nanos() % 1_000_000 != 0 {
        return Err("is finer than a millisecond (Avro rows hold timestamp-millis)");
    }
    Ok(at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_output(dob: &[Option<&str>]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("dob", DataType::Utf8, true),
            Field::new("first_name", DataType::Utf8, true),
        ]);
        let n = dob.len();
        let ids: StringArray = (0..n).map(|i| Some(format!("id{i}"))).collect();
        let names: StringArray = (0..n).map(|_| Some("Kari")).collect();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(ids), Arc::new(StringArray::from(dob.to_vec())), Arc::new(names)],
        )
        .unwrap()
    }

    #[test]
    fn timestamps_become_millis_and_the_id_is_required() {
        let out = sql_output(&[Some("1963-01-15T20:41:04.502Z"), None, Some("2014-01-07T10:20:01+02:00")]);
        let typed = Arc::new(schema(&out.schema()));
        assert!(!typed.field(0).is_nullable());
        assert_eq!(typed.field(1).data_type(), &timestamp());
        assert_eq!(typed.field(2).data_type(), &DataType::Utf8);
        let (rows, refused) = batch(&out, &typed).unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        let dob = rows.column(1).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        assert_eq!(dob.value(0), -219_640_735_498);
        assert!(dob.is_null(1), "a null stays null");
        assert_eq!(dob.value(2), 1_389_082_801_000, "an offset is the same instant in UTC");
    }

    #[test]
    fn a_value_avro_cannot_hold_leaves_its_row_out_with_why() {
        let out =
            sql_output(&[Some("yesterday"), Some("2014-01-07T08:20:01.635Z"), Some("2014-01-07T08:20:01.635001Z")]);
        let typed = Arc::new(schema(&out.schema()));
        let (rows, refused) = batch(&out, &typed).unwrap();
        assert_eq!(rows.num_rows(), 1);
        assert_eq!(refused.len(), 2);
        assert_eq!(refused[0].0, 0);
        assert!(refused[0].1.contains("\"yesterday\" is not an RFC 3339 timestamp"), "{}", refused[0].1);
        assert_eq!(refused[1].0, 2);
        assert!(refused[1].1.contains("finer than a millisecond"), "{}", refused[1].1);
    }

    #[test]
    fn millis_read_back_as_the_text_json_rows_carry() {
        let out = sql_output(&[Some("1963-01-15T20:41:04.502Z"), Some("2014-01-07T08:20:01Z")]);
        let typed = Arc::new(schema(&out.schema()));
        let (rows, _) = batch(&out, &typed).unwrap();
        let text = cast(rows.column(1), &DataType::Utf8).unwrap();
        let text = text.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(text.value(0), "1963-01-15T20:41:04.502Z");
        assert_eq!(text.value(1), "2014-01-07T08:20:01Z");
    }
}
