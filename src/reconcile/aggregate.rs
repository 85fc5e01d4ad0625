//! An aggregate run's windows against the same SQL as one batch `GROUP BY`
//! over the records it read (`aggregate::oracle`): every window the run had
//! to emit is in its output topic with the oracle's values, and no other
//! (but a window an earlier run emitted, emitted again after a restart). A
//! record counts in each of its windows once, or its dead letter says it was
//! late for them.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use rdkafka::message::Message;
use serde_json::Value;

use super::ReconcileArgs;
use super::chain::{Check, Summary};
use crate::aggregate::oracle::Oracle;
use crate::kafka::{Batch, ClientOpts};
use crate::registry::{Registry, RegistryOpts};

/// Records the oracle reads at a time.
const CHUNK: usize = 10_000;

pub async fn windows(
    kafka: &ClientOpts,
    registry: &RegistryOpts,
    args: &ReconcileArgs,
    s: &Summary,
    dead: &HashMap<(i32, i64), String>,
) -> Result<Check> {
    let check = format!("{}: windows equal the SQL over their records", s.name());
    let (Some(sql), Some(input), Some(output)) = (&s.sql, &s.input_topic, &s.output_topic) else {
        let detail = "the summary names no SQL, input or output topic".to_owned();
        return Ok(Check::failed(check, detail, Vec::new(), 1));
    };
    let registry = Registry::new(registry)?;
    let mut oracle = Oracle::new(sql, s.event_time.as_deref(), registry, s.emitted_before, s.emitted_until).await?;
    // Read on a thread of its own, a chunk at a time, while the oracle counts the last.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let (client, topic, spans, stall) = (kafka.clone(), input.clone(), s.consumed.of(input), args.read_timeout);
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Batch::with_room(&topic, (CHUNK, 0));
        crate::kafka::read_spans(&client, &topic, &spans, stall, |m| {
            batch.push(m);
            if batch.len() >= CHUNK {
                let full = std::mem::replace(&mut batch, Batch::with_room(&topic, (CHUNK, 0)));
                let _ = tx.blocking_send(full);
            }
        })?;
        let _ = tx.blocking_send(batch);
        anyhow::Ok(())
    });
    while let Some(batch) = rx.recv().await {
        oracle.add(&batch, dead).await?;
    }
    reader.await.context("reading the aggregate's input back")?.with_context(|| format!("reading {input} back"))?;
    let (counted, undead) = (oracle.counted, oracle.undead);
    let want = oracle.rows().await?;
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    tokio::task::block_in_place(|| {
        crate::kafka::read_spans(kafka, output, &s.produced.of(output), args.read_timeout, |m| {
            let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            // In offset order: a window emitted again (a restart) is its last version.
            got.insert(text(m.key()), text(m.payload()));
        })
    })
    .with_context(|| format!("reading {output} back"))?;
    let mut wrong = Vec::new();
    for (key, row) in &want {
        match got.get(key) {
            None => wrong.push(format!("missing {key}")),
            Some(emitted) if !same_row(emitted, row) => wrong.push(format!("{key}: emitted {emitted}, expected {row}")),
            Some(_) => {}
        }
    }
    let again = |key: &str| window_end(key).is_some_and(|end| s.emitted_before.is_some_and(|b| end <= b));
    for key in got.keys().filter(|k| !want.contains_key(*k)) {
        if !again(key) {
            wrong.push(format!("emitted {key}, which no record of the run makes"));
        }
    }
    if undead > 0 {
        wrong.push(format!("{undead} record(s) that count in no window are not in the DLQ"));
    }
    if wrong.is_empty() {
        let detail = format!(
            "{} window row(s) of {counted} record(s) equal a batch GROUP BY over them ({} late for a window, in the DLQ)",
            want.len(),
            dead.values().filter(|why| crate::aggregate::late_until(why).is_some()).count()
        );
        Ok(Check::passed(check, detail))
    } else {
        let count = wrong.len() as u64;
        Ok(Check::failed(check, format!("{count} window row(s) differ from the batch GROUP BY"), wrong, count))
    }
}

/// The end (ms) of the window a row's key names.
fn window_end(key: &str) -> Option<i64> {
    let key: serde_json::Map<String, Value> = serde_json::from_str(key).ok()?;
    let end = key.values().find_map(|v| v.get("end")?.as_str())?;
    chrono::DateTime::parse_from_rfc3339(end).ok().map(|t| t.timestamp_millis())
}

/// Two rows' JSON hold the same values; numbers within a part in 10^9 (a
/// float's sum depends on the order its partial sums were merged in).
fn same_row(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<Value>(a), serde_json::from_str::<Value>(b)) {
        (Ok(a), Ok(b)) => same(&a, &b),
        _ => false,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w)),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_by_value_with_floats_merged_in_another_order() {
        assert!(same_row(r#"{"n":3,"avg":0.30000000000000004}"#, r#"{"avg":0.3,"n":3}"#));
        assert!(!same_row(r#"{"n":3,"avg":0.3}"#, r#"{"n":4,"avg":0.3}"#));
        assert!(!same_row(r#"{"n":3}"#, r#"{"n":3,"avg":null}"#));
    }

    #[test]
    fn a_key_names_its_windows_end() {
        let key = r#"{"window":{"start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:01:00Z"},"nat":"US"}"#;
        assert_eq!(window_end(key), Some(1_767_225_660_000));
    }
}
