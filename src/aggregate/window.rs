//! Event-time windows: the `tumble(size)` or `hop(slide, size)` call of an
//! aggregate's SQL (Arroyo's syntax), taken out of the SQL and replaced by a
//! column `__window` (a struct of `start` and `end`) that the stage fills in
//! before DataFusion sees the batch: a record is one row per window it falls in.

use std::ops::ControlFlow;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, RecordBatch, StructArray, TimestampMillisecondArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr, GroupByExpr, Ident, SetExpr, Statement, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::usage;

/// The column the window call becomes.
pub const WINDOW_COLUMN: &str = "__window";

/// Windows of `size`, one starting every `slide` (tumbling: slide = size), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub size: i64,
    pub slide: i64,
}

/// The SQL with its window call replaced, the windows it asked for, and
/// what it groups by (names, lower case: the columns that key an output row).
#[derive(Debug)]
pub struct Windowed {
    pub sql: String,
    /// What the SQL reads: raw users or clean rows.
    pub input: super::input::Input,
    pub windows: Windows,
    pub group_by: Vec<String>,
}

/// Find the one `tumble(interval)` or `hop(interval, interval)` call in `sql`
/// and replace it (every occurrence of the same call) by `__window`.
pub async fn take_window(sql: &str) -> Result<Windowed> {
    let mut statements = match Parser::parse_sql(&GenericDialect {}, sql) {
        Ok(s) => s,
        Err(e) => return usage(format!("invalid SQL: {e}")),
    };
    let [statement] = statements.as_mut_slice() else {
        return usage("the aggregate's SQL must be one SELECT statement");
    };
    let mut found = Found::default();
    let _ = statement.visit(&mut found);
    let Some((name, args)) = found.call else {
        return usage(
            "the aggregate's SQL must group by a window: tumble(interval '1 minute') or \
             hop(interval '10 seconds', interval '1 minute')",
        );
    };
    if let Some(other) = found.other {
        return usage(format!("the aggregate's SQL may have one window, not also {other}"));
    }
    let lengths = futures::future::try_join_all(args.iter().map(interval_ms)).await?;
    let windows = match (name.as_str(), lengths.as_slice()) {
        ("tumble", [size]) => Windows { size: *size, slide: *size },
        ("hop", [slide, size]) if size % slide == 0 && slide <= size => Windows { size: *size, slide: *slide },
        ("hop", [_, _]) => return usage("hop(slide, size): the size must be a whole number of slides"),
        _ => {
            return usage(format!(
                "{name}() takes {}",
                if name == "tumble" { "one interval" } else { "two intervals" }
            ));
        }
    };
    let input = super::input::Input::of(statement);
    Ok(Windowed { sql: statement.to_string(), input, windows, group_by: group_by(statement) })
}

/// The names a SELECT groups by: a column's or alias's name, else the expression's text.
fn group_by(statement: &Statement) -> Vec<String> {
    let Statement::Query(query) = statement else { return Vec::new() };
    let SetExpr::Select(select) = query.body.as_ref() else { return Vec::new() };
    let GroupByExpr::Expressions(exprs, _) = &select.group_by else { return Vec::new() };
    exprs
        .iter()
        .map(|e| match e {
            Expr::Identifier(ident) => ident.value.to_lowercase(),
            Expr::CompoundIdentifier(parts) => parts.last().map_or_else(String::new, |i| i.value.to_lowercase()),
            other => other.to_string().to_lowercase(),
        })
        .collect()
}

/// The window call, and another one if the SQL has two different ones.
#[derive(Default)]
struct Found {
    call: Option<(String, Vec<Expr>)>,
    other: Option<String>,
}

impl VisitorMut for Found {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(f) = expr else { return ControlFlow::Continue(()) };
        let name = f.name.to_string().to_lowercase();
        if name != "tumble" && name != "hop" {
            return ControlFlow::Continue(());
        }
        let args = match &f.args {
            datafusion::sql::sqlparser::ast::FunctionArguments::List(list) => list
                .args
                .iter()
                .filter_map(|a| match a {
                    datafusion::sql::sqlparser::ast::FunctionArg::Unnamed(
                        datafusion::sql::sqlparser::ast::FunctionArgExpr::Expr(e),
                    ) => Some(e.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        match &self.call {
            Some(call) if *call != (name.clone(), args.clone()) => self.other = Some(expr.to_string()),
            _ => self.call = Some((name, args)),
        }
        *expr = Expr::Identifier(Ident::new(WINDOW_COLUMN));
        ControlFlow::Continue(())
    }
}

/// An interval expression (`interval '1 minute'`) in milliseconds, as DataFusion reads it.
async fn interval_ms(expr: &Expr) -> Result<i64> {
    let bad = || usage::<i64>(format!("a window's length must be an interval of seconds or more, not {expr}"));
    let ctx = SessionContext::new();
    let Ok(df) = ctx.sql(&format!("SELECT {expr}")).await else { return bad() };
    let batches = df.collect().await.with_context(|| format!("evaluating {expr}"))?;
    let Some(batch) = batches.first().filter(|b| b.num_rows() == 1) else { return bad() };
    let ms = match ScalarValue::try_from_array(batch.column(0), 0)? {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000
        }
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds),
        _ => return bad(),
    };
    if ms < 1000 || ms % 1000 != 0 {
        return bad();
    }
    Ok(ms)
}

/// The type of `__window`.
pub fn window_type() -> DataType {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    DataType::Struct(Fields::from(vec![Field::new("start", ts.clone(), false), Field::new("end", ts, false)]))
}

/// `input` with `__window` added.
pub fn windowed_schema(input: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(WINDOW_COLUMN, window_type(), false)));
    Arc::new(Schema::new(fields))
}

impl Windows {
    /// The starts of the windows a time `t` (ms) falls in, oldest first.
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> + use<> {
        let last = t.div_euclid(self.slide) * self.slide;
        let (size, slide) = (self.size, self.slide);
        let count = size / slide;
        (0..count).rev().map(move |k| last - k * slide).filter(move |s| s + size > t)
    }

    /// The rows of `batch` each repeated once per window its event time
    /// (`times`, ms; `None`: left out) falls in, with `__window` filled in.
    pub fn assign(&self, batch: &RecordBatch, times: &[Option<i64>], schema: &SchemaRef) -> Result<RecordBatch> {
        let pairs: Vec<(u32, i64)> = times
            .iter()
            .enumerate()
            .filter_map(|(row, t)| Some((row as u32, (*t)?)))
            .flat_map(|(row, t)| self.starts(t).map(move |start| (row, start)))
            .collect();
        self.rows(batch, &pairs, schema)
    }

    /// The rows of `batch` named in `pairs` (row, window start), in that
    /// order, with `__window` filled in.
    pub fn rows(&self, batch: &RecordBatch, pairs: &[(u32, i64)], schema: &SchemaRef) -> Result<RecordBatch> {
        let (rows, starts): (Vec<u32>, Vec<i64>) = pairs.iter().copied().unzip();
        let take = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c, &take, None))
            .collect::<Result<_, _>>()
            .context("repeating rows for their windows")?;
        let ends: Vec<i64> = starts.iter().map(|s| s + self.size).collect();
        let DataType::Struct(fields) = window_type() else { unreachable!("a struct") };
        let window = StructArray::try_new(
            fields,
            vec![
                Arc::new(TimestampMillisecondArray::from(starts).with_timezone("UTC")) as ArrayRef,
                Arc::new(TimestampMillisecondArray::from(ends).with_timezone("UTC")),
            ],
            None,
        )
        .context("building the window column")?;
        columns.push(Arc::new(window));
        RecordBatch::try_new(schema.clone(), columns).context("adding the window column")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_window_call_becomes_a_column_and_its_lengths_are_read() {
        let w = take_window(
            "SELECT tumble(interval '1 minute') AS window, nat, count(*) FROM users_raw GROUP BY window, nat",
        )
        .await
        .unwrap();
        assert_eq!(w.windows, Windows { size: 60_000, slide: 60_000 });
        assert!(w.sql.contains("__window AS window") && !w.sql.contains("tumble"), "{}", w.sql);
        assert_eq!(w.group_by, ["window", "nat"]);
        let h = take_window(
            "SELECT hop(interval '10 seconds', interval '1 minute') AS w, count(*) FROM users_raw GROUP BY w",
        )
        .await
        .unwrap();
        assert_eq!(h.windows, Windows { size: 60_000, slide: 10_000 });
    }

    #[tokio::test]
    async fn a_sql_without_one_good_window_is_a_usage_error() {
        for (sql, says) in [
            ("SELECT nat, count(*) FROM users_raw GROUP BY nat", "must group by a window"),
            ("SELECT tumble(interval '1 minute') AS a, tumble(interval '1 hour') AS b FROM users_raw", "one window"),
            ("SELECT hop(interval '7 seconds', interval '1 minute') AS w FROM users_raw GROUP BY w", "whole number"),
            ("SELECT tumble(interval '1 month') AS w FROM users_raw GROUP BY w", "interval of seconds"),
            ("SELECT tumble(interval '500 milliseconds') AS w FROM users_raw GROUP BY w", "interval of seconds"),
            ("SELECT tumble(3) AS w FROM users_raw GROUP BY w", "interval"),
            ("SELEC x", "invalid SQL"),
        ] {
            let err = take_window(sql).await.expect_err(sql);
            assert_eq!(crate::error::exit_code(&err), 2, "{sql}");
            assert!(err.to_string().contains(says), "{sql}: {err}");
        }
    }

    #[test]
    fn a_time_falls_in_one_tumbling_window_and_in_size_over_slide_hopping_ones() {
        let tumble = Windows { size: 60_000, slide: 60_000 };
        assert_eq!(tumble.starts(61_000).collect::<Vec<_>>(), [60_000]);
        assert_eq!(tumble.starts(60_000).collect::<Vec<_>>(), [60_000], "a window holds its start");
        assert_eq!(tumble.starts(-1).collect::<Vec<_>>(), [-60_000], "before 1970 too");
        let hop = Windows { size: 30_000, slide: 10_000 };
        assert_eq!(hop.starts(25_000).collect::<Vec<_>>(), [0, 10_000, 20_000]);
        assert_eq!(hop.starts(30_000).collect::<Vec<_>>(), [10_000, 20_000, 30_000], "not the window it ends");
    }
}
