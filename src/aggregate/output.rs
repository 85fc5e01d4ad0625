//! The windows' rows as Kafka records: JSON (arrow-json), keyed by the row's
//! window and group (the columns the SQL groups by), so that a window emitted
//! again (a run after a crash) overwrites itself downstream.

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow_json::writer::{LineDelimited, WriterBuilder};
use serde_json::{Map, Value};

use super::window::window_type;
use crate::error::usage;

/// Which output columns key a row.
#[derive(Debug)]
pub struct Keys {
    columns: Vec<String>,
    /// The column holding the window.
    window: String,
}

impl Keys {
    /// The output columns named in the GROUP BY, and the window column (which the SQL must select).
    pub fn of(schema: &Schema, group_by: &[String]) -> Result<Self> {
        let Some(window) = schema.fields().iter().find(|f| f.data_type() == &window_type()) else {
            return usage("the aggregate's SQL must select its window (e.g. tumble(interval '1 minute') AS window)");
        };
        let columns = schema
            .fields()
            .iter()
            .filter(|f| f.name() == window.name() || group_by.contains(&f.name().to_lowercase()))
            .map(|f| f.name().clone())
            .collect();
        Ok(Self { columns, window: window.name().clone() })
    }

    /// The window's column.
    pub fn window(&self) -> &str {
        &self.window
    }

    /// The columns of the group (the key but the window).
    pub fn group(&self) -> Vec<String> {
        self.columns.iter().filter(|c| **c != self.window).cloned().collect()
    }

    /// Each row as (key, JSON).
    pub fn rows(&self, batches: &[RecordBatch]) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for batch in batches {
            let mut lines = Vec::new();
            let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(&mut lines);
            writer.write(batch).context("writing the windows' rows as JSON")?;
            writer.finish().context("writing the windows' rows as JSON")?;
            drop(writer);
            for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let row: Map<String, Value> = serde_json::from_slice(line).context("reading a row back")?;
                let key: Map<String, Value> =
                    self.columns.iter().map(|c| (c.clone(), row.get(c).cloned().unwrap_or(Value::Null))).collect();
                out.push((Value::Object(key).to_string(), String::from_utf8_lossy(line).into_owned()));
            }
        }
        Ok(out)
    }

    /// How many windows the rows are of.
    pub fn windows(&self, rows: &[(String, String)]) -> u64 {
        let windows: std::collections::HashSet<String> = rows
            .iter()
            .filter_map(|(key, _)| {
                serde_json::from_str::<Map<String, Value>>(key).ok()?.get(&self.window).map(Value::to_string)
            })
            .collect();
        windows.len() as u64
    }
}

/// A time in ms as RFC 3339 (for a late record's reason).
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}

const LATE: &str = "late: window [";

/// The DLQ reason of a record late for the window starting at `start` (of
/// `size` ms), the newest of its windows emitted already: it missed that one and every earlier one.
pub fn late_reason(start: i64, size: i64) -> String {
    format!("{LATE}{}, {}) was emitted already", rfc3339(start), rfc3339(start + size))
}

/// The end (ms) of the window a `late_reason` names: the record missed every window of its ending by then.
pub fn late_until(reason: &str) -> Option<i64> {
    let end = reason.strip_prefix(LATE)?.split_once(", ")?.1.split_once(')')?.0;
    chrono::DateTime::parse_from_rfc3339(end).ok().map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_reason_names_the_window_missed_and_reads_back() {
        let reason = late_reason(60_000, 60_000);
        assert_eq!(reason, "late: window [1970-01-01T00:01:00+00:00, 1970-01-01T00:02:00+00:00) was emitted already");
        assert_eq!(late_until(&reason), Some(120_000));
        assert_eq!(late_until("no event time: null"), None);
    }
}
