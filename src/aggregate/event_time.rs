//! Each record's event time: `--event-time EXPR`, an SQL expression over
//! `users_raw` planned once and run on each batch as the transform's SQL is;
//! by default the ingest stamp the record carries (else its Kafka timestamp).

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};

use super::input::Input;
use crate::kafka::Batch;
use crate::raw::decode::Decoded;
use crate::transform::sql::Query;

pub struct EventTime {
    query: Option<Query>,
}

/// Per decoded row its event time in ms (`None`: it has none), and the inputs
/// that have none, with why (for the DLQ).
type Times = (Vec<Option<i64>>, Vec<(usize, String)>);

impl EventTime {
    pub async fn plan(expr: Option<&str>, input: Input) -> Result<Self> {
        let Some(expr) = expr else { return Ok(Self { query: None }) };
        // `id`: what a plan of the transform's must make; the decoder always fills it.
        let id = match input {
            Input::Raw => "login['uuid']",
            Input::Clean => "id",
        };
        let sql = format!("SELECT {id} AS id, to_timestamp_millis({expr}) AS event_time FROM {}", input.table());
        let query = Query::plan_over(&sql, input.table(), input.schema()).await.context("--event-time")?;
        Ok(Self { query: Some(query) })
    }

    /// Whether the expression reads the raw field at `path`.
    pub fn reads(&self, path: &str) -> bool {
        self.query.as_ref().is_some_and(|q| q.reads().leaf(path))
    }

    pub async fn times(&mut self, decoded: &Decoded, batch: &Batch) -> Result<Times> {
        let Some(query) = &mut self.query else { return Ok(stamps(decoded, batch)) };
        let mut times = Vec::with_capacity(decoded.rows.len());
        let mut failed = Vec::new();
        match query.run(decoded.batch.clone()).await {
            Ok(out) => {
                for b in &out {
                    times.extend(millis(b.column(1))?);
                }
            }
            // One record's time does not parse: row by row, to find it.
            Err(_) => {
                for (n, input) in decoded.rows.iter().enumerate() {
                    match query.run(decoded.batch.slice(n, 1)).await {
                        Ok(out) => times.push(
                            out.first()
                                .map(|b| millis(b.column(1)))
                                .transpose()?
                                .and_then(|t| t.first().copied().flatten()),
                        ),
                        Err(e) => {
                            times.push(None);
                            failed.push((*input, format!("no event time: {e:#}")));
                        }
                    }
                }
            }
        }
        for (t, input) in times.iter().zip(&decoded.rows) {
            if t.is_none() && !failed.iter().any(|(i, _)| i == input) {
                failed.push((*input, "no event time: --event-time is null for it".to_owned()));
            }
        }
        Ok((times, failed))
    }
}

/// The ingest stamps (RFC 3339) of the decoded rows' records, else their Kafka timestamps.
fn stamps(decoded: &Decoded, batch: &Batch) -> Times {
    let mut failed = Vec::new();
    let times = decoded
        .rows
        .iter()
        .map(|input| {
            let record = batch.get(*input);
            let stamp = record
                .ingested_at()
                .and_then(|at| std::str::from_utf8(at).ok())
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .map(|t| t.timestamp_millis())
                .or_else(|| record.timestamp());
            if stamp.is_none() {
                failed.push((*input, "no event time: no ingest stamp nor Kafka timestamp".to_owned()));
            }
            stamp
        })
        .collect();
    (times, failed)
}

fn millis(column: &arrow::array::ArrayRef) -> Result<Vec<Option<i64>>> {
    let ms = arrow::compute::cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))
        .context("--event-time must give a timestamp, or text in RFC 3339")?;
    let ms = ms.as_primitive::<TimestampMillisecondType>();
    Ok((0..ms.len()).map(|i| ms.is_valid(i).then(|| ms.value(i))).collect())
}
