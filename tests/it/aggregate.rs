//! `rtds aggregate` against the real broker: windows by event time against an
//! oracle counted here from the raw records, a rerun that reads nothing more,
//! and late records in the DLQ, each counted once.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::Message;
use serde_json::Value;

use crate::harness::*;

const RUN: Duration = Duration::from_secs(120);
const USERS: usize = 2000;
const WINDOW_MS: i64 = 30 * 86_400_000;
const SQL: &str = "SELECT tumble(interval '30 days') AS window, nat, count(*) AS signups, \
    sum(dob['age']) AS ages FROM users_raw GROUP BY window, nat";

/// Per (window start, nationality): users and the sum of their ages.
type Windows = BTreeMap<(i64, String), (i64, i64)>;

/// The windows, counted here from the raw records.
fn oracle(raw: &str) -> Windows {
    let mut counts = BTreeMap::new();
    for m in read_all(raw, RUN) {
        let user: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let registered = chrono::DateTime::parse_from_rfc3339(user["registered"]["date"].as_str().unwrap()).unwrap();
        let start = registered.timestamp_millis().div_euclid(WINDOW_MS) * WINDOW_MS;
        let entry = counts.entry((start, user["nat"].as_str().unwrap().to_owned())).or_insert((0, 0));
        entry.0 += 1;
        entry.1 += user["dob"]["age"].as_i64().unwrap();
    }
    counts
}

/// The windows' rows in `topic`, the same way, with the key each came under.
fn emitted(topic: &str) -> (Windows, usize) {
    let mut rows = BTreeMap::new();
    let records = read_all(topic, RUN);
    for m in &records {
        let row: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let start = chrono::DateTime::parse_from_rfc3339(row["window"]["start"].as_str().unwrap()).unwrap();
        let key: Value = serde_json::from_slice(m.key().unwrap()).unwrap();
        assert_eq!((&key["window"], &key["nat"]), (&row["window"], &row["nat"]), "keyed by window and group");
        let group = (start.timestamp_millis(), row["nat"].as_str().unwrap().to_owned());
        let counted = (row["signups"].as_i64().unwrap(), row["ages"].as_i64().unwrap());
        assert!(rows.insert(group.clone(), counted).is_none(), "{group:?} emitted twice");
    }
    (rows, records.len())
}

#[test]
fn windows_by_event_time_equal_the_oracle_and_late_records_go_to_the_dlq() {
    require_kafka();
    let (raw, out, dlq) = (unique("it_agg_raw"), unique("it_agg_out"), unique("it_agg_dlq"));
    let sql = std::env::temp_dir().join(format!("{}.sql", unique("it_agg")));
    std::fs::write(&sql, SQL).unwrap();
    let n = USERS.to_string();
    let ingest =
        run(rtds().args(["ingest", "--source", "generate", "--count", &n, "--seed", "31", "--topic", &raw]), RUN);
    assert!(ingest.status.success(), "{}", stderr(&ingest));
    let aggregate = |group: &str, out: &str, dlq: &str, lateness: &str| {
        let o = run(
            rtds()
                .args(["aggregate", "--input-topic", &raw, "--output-topic", out, "--dlq-topic", dlq, "--group", group])
                .args(["--event-time", "registered['date']", "--allowed-lateness", lateness])
                .arg("--sql")
                .arg(&sql),
            RUN,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        summary(&o)
    };
    // Registration dates span decades in no order: a lateness of 50 years keeps every window open to the end.
    let group = unique("it_agg_g");
    let s = aggregate(&group, &out, &dlq, "50y");
    assert_eq!(
        (s["in"].as_u64(), s["dlq"].as_u64(), s["late"].as_u64()),
        (Some(USERS as u64), Some(0), Some(0)),
        "{s}"
    );
    let (rows, records) = emitted(&out);
    assert_eq!(rows, oracle(&raw), "each window and group counted as the raw records say");
    assert_eq!(s["out"].as_u64(), Some(records as u64), "{s}");
    assert!(rows.len() > 100, "enough windows and groups to mean something: {}", rows.len());
    assert_eq!(
        s["windows"].as_u64(),
        Some(rows.keys().map(|(w, _)| w).collect::<std::collections::BTreeSet<_>>().len() as u64)
    );
    // Committed once every window was out: the same group reads nothing more.
    let again = aggregate(&group, &unique("it_agg_out2"), &dlq, "50y");
    assert_eq!((again["in"].as_u64(), again["out"].as_u64()), (Some(0), Some(0)), "{again}");

    // A lateness of a day: the watermark runs ahead with the newest date, and a record of a window
    // already emitted goes to the DLQ as late. Each record is in one window or in the DLQ.
    let (late_out, late_dlq) = (unique("it_agg_out3"), unique("it_agg_dlq3"));
    let s = aggregate(&unique("it_agg_g3"), &late_out, &late_dlq, "1day");
    let late = s["late"].as_u64().unwrap();
    assert!(late > 0, "{s}");
    let (rows, _) = emitted(&late_out);
    let counted: i64 = rows.values().map(|(n, _)| n).sum();
    assert_eq!(counted as u64 + late, USERS as u64, "every record in one window or late: {s}");
    let dead = read_all(&late_dlq, RUN);
    assert_eq!(dead.len() as u64, late);
    assert!(dead.iter().all(|m| header(m, "rtds-error").is_some_and(|e| e.starts_with("late: window ["))
        && header(m, "rtds-stage").as_deref() == Some("aggregate")));
    let _ = std::fs::remove_file(&sql);
}

#[test]
fn a_bad_window_or_sql_is_a_one_line_usage_error() {
    require_kafka();
    for sql in [
        "SELECT nat, count(*) FROM users_raw GROUP BY nat",
        "SELECT tumble(interval '1 month') AS window, count(*) FROM users_raw GROUP BY window",
        "SELECT tumble(interval '1 minute') AS window, nope FROM users_raw GROUP BY window, nope",
    ] {
        let file = std::env::temp_dir().join(format!("{}.sql", unique("it_agg_bad")));
        std::fs::write(&file, sql).unwrap();
        let o = run(rtds().args(["aggregate", "--input-topic", &unique("it_agg_none")]).arg("--sql").arg(&file), RUN);
        assert_one_line_error(&o, 2);
        let _ = std::fs::remove_file(&file);
    }
}
