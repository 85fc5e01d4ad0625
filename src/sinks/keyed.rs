//! Rows of the shape a SQL gives (an aggregate's windows), upserted by key
//! into a store that holds them as columns: the table's columns from the Arrow
//! schema, key columns first, and each row's values. A sink that takes them
//! implements `Connector::open_keyed`.

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray, RecordBatch, StructArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, TimeUnit, TimestampMillisecondType};
use futures::future::BoxFuture;

use super::WriteError;
use crate::error::usage;

/// What a column holds, as the stores type it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Text,
    Bool,
    /// A time, in milliseconds since the epoch (UTC).
    Time,
}

impl Kind {
    pub fn postgres(self) -> &'static str {
        match self {
            Kind::Int => "bigint",
            Kind::Float => "double precision",
            Kind::Text => "text",
            Kind::Bool => "boolean",
            Kind::Time => "timestamp with time zone",
        }
    }

    pub fn cql(self) -> &'static str {
        match self {
            Kind::Int => "bigint",
            Kind::Float => "double",
            Kind::Text => "text",
            Kind::Bool => "boolean",
            Kind::Time => "timestamp",
        }
    }

    /// The Arrow type a column of `data_type` is read as (by `cast`), and its kind; none for a type no store here holds.
    fn of(data_type: &DataType) -> Option<(Kind, DataType)> {
        use DataType as D;
        Some(match data_type {
            D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
                (Kind::Int, D::Int64)
            }
            D::Float16 | D::Float32 | D::Float64 | D::Decimal128(..) | D::Decimal256(..) => (Kind::Float, D::Float64),
            D::Utf8 | D::LargeUtf8 | D::Utf8View => (Kind::Text, D::Utf8),
            D::Boolean => (Kind::Bool, D::Boolean),
            D::Timestamp(..) | D::Date32 | D::Date64 => (Kind::Time, D::Timestamp(TimeUnit::Millisecond, None)),
            _ => return None,
        })
    }
}

/// A value of a row, as `Kind` says.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Time(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

/// The columns of a table of keyed rows: the first `key` of them the key.
#[derive(Debug, Clone)]
pub struct Shape {
    pub columns: Vec<Column>,
    pub key: usize,
    /// Per output column of the rows, how it is read: a window (its start and end) or a column.
    sources: Vec<Source>,
}

#[derive(Debug, Clone)]
enum Source {
    Window(usize),
    /// The column at this index, read as its kind's Arrow type.
    Column(usize, Kind, DataType),
}

impl Shape {
    /// The table of `schema`'s rows keyed by `window` (a struct of start and
    /// end, held as `<window>_start` and `<window>_end`) and the `key` columns.
    /// Every column must have a name a table can take (`AS name` in the SQL)
    /// and a type it can hold.
    pub fn of(schema: &Schema, window: &str, key: &[String]) -> Result<Self> {
        let mut keyed: Vec<(bool, Vec<Column>, Source)> = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let named = |name: String| match crate::validate::parse_identifier(&name) {
                Ok(name) => Ok(name),
                Err(why) => usage(format!(
                    "column `{}` of the SQL's result cannot be a table's column ({why}): name it with AS",
                    field.name()
                )),
            };
            if field.name() == window {
                let columns = vec![
                    Column { name: named(format!("{window}_start"))?, kind: Kind::Time },
                    Column { name: named(format!("{window}_end"))?, kind: Kind::Time },
                ];
                keyed.push((true, columns, Source::Window(i)));
                continue;
            }
            let Some((kind, read_as)) = Kind::of(field.data_type()) else {
                return usage(format!(
                    "column `{}` of the SQL's result is {}, which no table here holds: cast it in the SQL",
                    field.name(),
                    field.data_type()
                ));
            };
            let is_key = key.contains(field.name());
            keyed.push((
                is_key,
                vec![Column { name: named(field.name().clone())?, kind }],
                Source::Column(i, kind, read_as),
            ));
        }
        // Key columns first, in the SQL's order.
        keyed.sort_by_key(|(is_key, ..)| !is_key);
        let key = keyed.iter().filter(|(is_key, ..)| *is_key).map(|(_, c, _)| c.len()).sum();
        let (columns, sources) = keyed.into_iter().fold((Vec::new(), Vec::new()), |(mut cs, mut ss), (_, c, s)| {
            cs.extend(c);
            ss.push(s);
            (cs, ss)
        });
        Ok(Self { columns, key, sources })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// Each row of `batches` as its values, in the order of `columns`.
    pub fn values(&self, batches: &[RecordBatch]) -> Result<Vec<Vec<Value>>> {
        let mut rows = Vec::new();
        for batch in batches {
            let mut columns: Vec<Vec<Value>> = Vec::with_capacity(self.columns.len());
            for source in &self.sources {
                match source {
                    Source::Window(i) => {
                        let window: &StructArray = batch.column(*i).as_struct();
                        for part in window.columns() {
                            columns.push(read(part, &DataType::Timestamp(TimeUnit::Millisecond, None), Kind::Time)?);
                        }
                    }
                    Source::Column(i, kind, read_as) => columns.push(read(batch.column(*i), read_as, *kind)?),
                }
            }
            for r in 0..batch.num_rows() {
                rows.push(columns.iter_mut().map(|c| std::mem::replace(&mut c[r], Value::Null)).collect());
            }
        }
        Ok(rows)
    }
}

/// A column's values, read as `as_type` (its kind's Arrow type).
fn read(column: &dyn Array, as_type: &DataType, kind: Kind) -> Result<Vec<Value>> {
    let column =
        cast(column, as_type).with_context(|| format!("reading a column of {} as {as_type}", column.data_type()))?;
    let value = |i: usize| match kind {
        _ if column.is_null(i) => Value::Null,
        Kind::Int => Value::Int(column.as_primitive::<Int64Type>().value(i)),
        Kind::Float => Value::Float(column.as_primitive::<Float64Type>().value(i)),
        Kind::Text => Value::Text(column.as_string::<i32>().value(i).to_owned()),
        Kind::Bool => Value::Bool(column.as_boolean().value(i)),
        Kind::Time => Value::Time(column.as_primitive::<TimestampMillisecondType>().value(i)),
    };
    Ok((0..column.len()).map(value).collect())
}

/// An open table of keyed rows.
pub trait KeyedWriter: Send {
    /// Where the rows go (`keyspace.table`, `schema.table`).
    fn location(&self) -> String;

    /// Upsert `rows` (values in the shape's order) by their key: all, or a
    /// `WriteError` (`Transient`: a retry may cure it).
    fn upsert<'a>(&'a mut self, rows: &'a [Vec<Value>]) -> BoxFuture<'a, Result<(), WriteError>>;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Fields};

    use super::*;

    fn windows() -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let fields = Fields::from(vec![Field::new("start", ts.clone(), false), Field::new("end", ts.clone(), false)]);
        let window = StructArray::new(
            fields.clone(),
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![0, 60_000]).with_timezone("UTC")),
                Arc::new(TimestampMillisecondArray::from(vec![60_000, 120_000]).with_timezone("UTC")),
            ],
            None,
        );
        let schema = Schema::new(vec![
            Field::new("signups", DataType::Int64, false),
            Field::new("window", DataType::Struct(fields), false),
            Field::new("mean_age", DataType::Float64, true),
            Field::new("nat", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![3, 4])),
                Arc::new(window),
                Arc::new(Float64Array::from(vec![Some(41.5), None])),
                Arc::new(StringArray::from(vec!["US", "FR"])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_window_and_group_lead_as_the_key_and_each_row_reads_in_that_order() {
        let batch = windows();
        let shape = Shape::of(&batch.schema(), "window", &["nat".into()]).unwrap();
        assert_eq!(shape.names().collect::<Vec<_>>(), ["window_start", "window_end", "nat", "signups", "mean_age"]);
        assert_eq!(shape.key, 3);
        let rows = shape.values(&[batch]).unwrap();
        assert_eq!(
            rows[0],
            [Value::Time(0), Value::Time(60_000), Value::Text("US".into()), Value::Int(3), Value::Float(41.5)]
        );
        assert_eq!(rows[1][4], Value::Null);
    }

    #[test]
    fn an_unnamed_or_unholdable_column_is_a_usage_error() {
        let unnamed = Schema::new(vec![Field::new("count(*)", DataType::Int64, false)]);
        let e = Shape::of(&unnamed, "window", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("name it with AS"), "{e:#}");
        let list = Schema::new(vec![Field::new("ids", DataType::new_list(DataType::Utf8, true), false)]);
        let e = Shape::of(&list, "window", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("cast it in the SQL"), "{e:#}");
    }
}
