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

/// `rtds reconcile` of an aggregate's run (its summary line, with its ingest's), allowing every record late.
fn reconcile(summaries: &[&str]) -> std::process::Output {
    run(rtds().args(["reconcile", "--max-dlq-share", "100%"]).args(summaries.iter().map(|s| s.trim())), RUN)
}

/// The reconcile report's check named `check`.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    let checks = report["checks"].as_array().unwrap();
    checks.iter().find(|c| c["check"].as_str().is_some_and(|n| n.contains(name))).unwrap_or_else(|| panic!("{report}"))
}

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
    let ingested = stdout(&ingest);
    let lines = std::cell::RefCell::new(Vec::new());
    let aggregate = |group: &str, out: &str, dlq: &str, lateness: &str| {
        let o = run(
            rtds()
                .args(["aggregate", "--input-topic", &raw, "--output-topic", out, "--dlq-topic", dlq, "--group", group])
                .args(["--event-time", "registered['date']", "--allowed-lateness", lateness])
                .args(["--batch-size", "100"])
                .arg("--sql")
                .arg(&sql),
            RUN,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        lines.borrow_mut().push(stdout(&o));
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
    // Reconcile proves the run: every record read, counted, its windows equal a batch GROUP BY.
    let first = lines.borrow()[0].clone();
    let rec = reconcile(&[&ingested, &first]);
    assert!(rec.status.success(), "{}{}", stdout(&rec), stderr(&rec));
    let report = summary(&rec);
    assert_eq!(report["scope"], "ingest..aggregate", "{report}");
    assert!(check(&report, "windows equal")["detail"].as_str().unwrap().contains(&format!("of {USERS} record(s)")));
    // A row the run emitted, lost: reconcile names its window.
    let mut lost: Value = serde_json::from_str(first.trim()).unwrap();
    let spans = lost["produced"].as_array_mut().unwrap();
    let span = spans.iter_mut().find(|t| t["topic"] == out.as_str() && t["count"].as_u64() > Some(1)).unwrap();
    span["last"] = Value::from(span["last"].as_i64().unwrap() - 1);
    span["count"] = Value::from(span["count"].as_u64().unwrap() - 1);
    lost["out"] = Value::from(lost["out"].as_u64().unwrap() - 1);
    let rec = reconcile(&[&ingested, &lost.to_string()]);
    assert_eq!(rec.status.code(), Some(1), "{}", stdout(&rec));
    let report = summary(&rec);
    let windows = check(&report, "windows equal");
    assert_eq!((windows["ok"].as_bool(), windows["missing_count"].as_u64()), (Some(false), Some(1)), "{report}");
    // Committed once every window was out: the same group reads nothing more.
    let again = aggregate(&group, &unique("it_agg_out2"), &dlq, "50y");
    assert_eq!((again["in"].as_u64(), again["out"].as_u64()), (Some(0), Some(0)), "{again}");

    // A lateness of a day, batches of 100: the watermark runs ahead with the newest date, and a record of a window
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
    // Late records too: reconcile counts each in its window or in the DLQ.
    let late_run = lines.borrow().last().unwrap().clone();
    let rec = reconcile(&[&ingested, &late_run]);
    assert!(rec.status.success(), "{}{}", stdout(&rec), stderr(&rec));
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
    // Windows go to a store that upserts by key; an unnamed column cannot be a table's.
    for (sql, sink) in [
        ("SELECT tumble(interval '1 minute') AS window, count(*) AS n FROM users_raw GROUP BY window", "parquet"),
        ("SELECT tumble(interval '1 minute') AS window, count(*) FROM users_raw GROUP BY window", "postgres"),
    ] {
        let file = std::env::temp_dir().join(format!("{}.sql", unique("it_agg_bad")));
        std::fs::write(&file, sql).unwrap();
        let o = run(rtds().args(["aggregate", "--sink", sink]).arg("--sql").arg(&file), RUN);
        assert_one_line_error(&o, 2);
        let _ = std::fs::remove_file(&file);
    }
}

/// Generated users whose registration times run a second every 200 records, each up to 720 ms
/// out of order, produced keyed by id to a new topic (3 partitions): the time of each.
fn users_out_of_order(topic: &str, n: usize) -> Vec<i64> {
    let scratch = unique("it_agg_gen");
    let count = n.to_string();
    let o = run(
        rtds().args(["ingest", "--source", "generate", "--count", &count, "--seed", "8", "--topic", &scratch]),
        RUN,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let base = 1_800_000_000_000i64;
    let users: Vec<(Vec<u8>, Vec<u8>, i64)> = read_all(&scratch, RUN)
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut user: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let t = base + i as i64 * 5 - (i as i64 % 7) * 120;
            user["registered"]["date"] = Value::from(chrono::DateTime::from_timestamp_millis(t).unwrap().to_rfc3339());
            (m.key().unwrap().to_vec(), serde_json::to_vec(&user).unwrap(), t)
        })
        .collect();
    let records: Vec<Record<'_>> = users.iter().map(|(k, v, _)| (Some(k.as_slice()), Some(v.as_slice()))).collect();
    // In small rounds: small record batches, each partition's a few records, as a stream writes them.
    for round in records.chunks(60) {
        produce(topic, round);
    }
    users.iter().map(|(_, _, t)| *t).collect()
}

#[test]
fn a_killed_aggregate_rebuilds_its_open_windows_and_emits_each_window_whole() {
    let tumble = "SELECT tumble(interval '1 second') AS window, count(*) AS n FROM users_raw GROUP BY window";
    killed_and_rerun(tumble, 1000, &[]);
}

#[test]
fn a_killed_exactly_once_aggregate_of_hopping_windows_emits_each_window_once() {
    let hop = "SELECT hop(interval '1 second', interval '2 seconds') AS window, count(*) AS n \
        FROM users_raw GROUP BY window";
    // A transaction a batch: the 40th commit is mid-stream.
    killed_and_rerun(hop, 2000, &["--exactly-once", "--transaction-records", "20"]);
}

/// An aggregate of `sql` (windows of `size_ms`, one a second) killed (-9)
/// right after its 40th commit is stored, and run again: every emission of a
/// window, before the kill and after, holds all of its records; with
/// `--exactly-once` in `extra`, a read_committed reader sees each window once.
fn killed_and_rerun(sql: &str, size_ms: i64, extra: &[&str]) {
    require_kafka();
    let (raw, out, dlq) = (unique("it_aggk_raw"), unique("it_aggk_out"), unique("it_aggk_dlq"));
    let times = users_out_of_order(&raw, USERS);
    let file = std::env::temp_dir().join(format!("{}.sql", unique("it_aggk")));
    std::fs::write(&file, sql).unwrap();
    let group = unique("it_aggk_g");
    // A static member: the rerun takes the partitions back at once.
    let member = unique("it-aggk");
    let aggregate = || {
        let mut cmd = rtds();
        // Small fetches: the partitions are read side by side, as a stream comes, not one after another.
        cmd.env("RTDS_KAFKA_OPTIONS", "max.partition.fetch.bytes=20000");
        cmd.args(["aggregate", "--input-topic", &raw, "--output-topic", &out, "--dlq-topic", &dlq, "--group", &group])
            .args(["--event-time", "registered['date']", "--allowed-lateness", "2s", "--batch-size", "20"])
            .args(extra)
            .args(["--group-instance-id", &member])
            .arg("--sql")
            .arg(&file);
        cmd
    };
    let killed = run(aggregate().env("RTDS_FAULT_KILL_AT_AGGREGATE_COMMIT", "40"), RUN);
    assert!(!killed.status.success(), "the fault hook killed it: {}", stderr(&killed));
    let rerun = run(&mut aggregate(), RUN);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let s = summary(&rerun);
    let read = s["in"].as_u64().unwrap();
    assert!(read > 0 && read < USERS as u64, "resumed from the killed run's commits: {s}");
    assert!(s["skipped"].as_u64().unwrap() > 0, "records of windows emitted before the kill read again: {s}");
    assert_eq!((s["dlq"].as_u64(), s["late"].as_u64()), (Some(0), Some(0)), "{s}");
    // A window a second, each time in size_ms / 1000 of them.
    let mut oracle: BTreeMap<String, i64> = BTreeMap::new();
    for t in &times {
        for k in 0..size_ms / 1000 {
            let start = chrono::DateTime::from_timestamp_millis(t / 1000 * 1000 - k * 1000).unwrap();
            *oracle.entry(start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)).or_default() += 1;
        }
    }
    let mut emitted: BTreeMap<String, i64> = BTreeMap::new();
    let mut emissions = 0;
    for m in read_all(&out, RUN) {
        let row: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let start = chrono::DateTime::parse_from_rfc3339(row["window"]["start"].as_str().unwrap()).unwrap();
        let start = start.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let n = row["n"].as_i64().unwrap();
        assert_eq!(oracle.get(&start), Some(&n), "window {start} emitted with {n} records");
        emitted.insert(start, n);
        emissions += 1;
    }
    assert_eq!(emitted, oracle, "every window emitted, whole");
    if extra.contains(&"--exactly-once") {
        assert_eq!(emissions, oracle.len(), "read_committed: each window once");
    }
    // Reconcile proves the rerun on its own: windows emitted before the kill are left out.
    let rec = reconcile(&[&stdout(&rerun)]);
    assert!(rec.status.success(), "{}{}", stdout(&rec), stderr(&rec));
    assert!(read_all(&dlq, Duration::from_secs(5)).is_empty());
    let _ = std::fs::remove_file(&file);
}

/// Per (window start in ms, nationality): users, from the windows' JSON rows of `topic`.
fn signups(topic: &str) -> BTreeMap<(i64, String), i64> {
    let (rows, _) = emitted(topic);
    rows.into_iter().map(|(group, (n, _))| (group, n)).collect()
}

/// `got` equals `want`, or a panic naming what differs (a few of the groups, not all).
fn assert_same(got: &BTreeMap<(i64, String), i64>, want: &BTreeMap<(i64, String), i64>, what: &str) {
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    let differ: Vec<_> = keys.into_iter().filter(|k| got.get(*k) != want.get(*k)).collect();
    let shown: Vec<String> =
        differ.iter().take(5).map(|k| format!("{k:?}: {:?} not {:?}", got.get(*k), want.get(*k))).collect();
    assert!(differ.is_empty(), "{what}: {} of {} groups differ, e.g. {}", differ.len(), want.len(), shown.join("; "));
}

#[test]
fn windows_of_avro_users_equal_the_json_ones_and_upsert_into_postgres_and_cassandra() {
    require_kafka();
    require_registry();
    let _stores = stores_shared();
    let sql = std::env::temp_dir().join(format!("{}.sql", unique("it_aggs")));
    std::fs::write(&sql, SQL).unwrap();
    let table = unique("it_aggs_t");
    let aggregate = |raw: &str, out: &str, sink: &[&str]| {
        let o = run(
            rtds()
                .args(["aggregate", "--input-topic", raw, "--output-topic", out, "--group", &unique("it_aggs_g")])
                .args(["--event-time", "registered['date']", "--allowed-lateness", "50y", "--table", &table])
                .args(sink)
                .arg("--sql")
                .arg(&sql),
            RUN,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        summary(&o)
    };
    let mut emitted_by = BTreeMap::new();
    for format in ["json", "avro"] {
        let (raw, out) = (unique("it_aggs_raw"), unique("it_aggs_out"));
        let ingest = run(
            rtds()
                .args(["ingest", "--source", "generate", "--count", "500", "--seed", "41", "--topic", &raw])
                .args(["--format", format]),
            RUN,
        );
        assert!(ingest.status.success(), "{}", stderr(&ingest));
        let sink = if format == "avro" { vec!["--sink", "postgres"] } else { vec!["--sink", "cassandra"] };
        let s = aggregate(&raw, &out, &sink);
        assert_eq!((s["in"].as_u64(), s["dlq"].as_u64()), (Some(500), Some(0)), "{format}: {s}");
        emitted_by.insert(format, (raw, signups(&out), s));
    }
    let (_, json, json_summary) = &emitted_by["json"];
    assert_same(&emitted_by["avro"].1, json, "Avro users make the windows their JSON makes");
    assert!(json.len() > 50, "{}", json.len());

    // The stores hold the windows' rows, a row per window and group, the window as two columns.
    let rt = runtime();
    let pg = postgres(&rt);
    let read_pg = || -> BTreeMap<(i64, String), i64> {
        let rows =
            rt.block_on(pg.query(&format!("SELECT window_start, nat, signups FROM public.{table}"), &[])).unwrap();
        rows.iter()
            .map(|r| {
                let start: chrono::DateTime<chrono::Utc> = r.get(0);
                ((start.timestamp_millis(), r.get::<_, String>(1)), r.get::<_, i64>(2))
            })
            .collect()
    };
    assert_same(&read_pg(), json, &format!("PostgreSQL: {}", emitted_by["avro"].2));
    let cql = cassandra(&rt);
    let rows = rt
        .block_on(cql.query_unpaged(format!("SELECT window_start, nat, signups FROM spark_streams.{table}"), &[]))
        .unwrap()
        .into_rows_result()
        .unwrap();
    let in_cassandra: BTreeMap<(i64, String), i64> = rows
        .rows::<(scylla::value::CqlTimestamp, String, i64)>()
        .unwrap()
        .map(|r| r.map(|(t, nat, n)| ((t.0, nat), n)).unwrap())
        .collect();
    assert_same(&in_cassandra, json, &format!("Cassandra: {json_summary}"));

    // Windows again, of fewer users (another group, the same table): each upserted over its old row.
    let (fewer_raw, fewer_out) = (unique("it_aggs_fewer"), unique("it_aggs_again"));
    let ingest = run(
        rtds().args(["ingest", "--source", "generate", "--count", "150", "--seed", "41", "--topic", &fewer_raw]),
        RUN,
    );
    assert!(ingest.status.success(), "{}", stderr(&ingest));
    aggregate(&fewer_raw, &fewer_out, &["--sink", "postgres"]);
    let fewer = signups(&fewer_out);
    let mut expected = json.clone();
    expected.extend(fewer.clone());
    assert!(fewer.iter().any(|(group, n)| json[group] != *n), "some windows count differently");
    assert_same(&read_pg(), &expected, "emitted again: overwritten, the others kept");
    let _ = std::fs::remove_file(&sql);
}

#[test]
fn windows_of_clean_rows_in_avro_equal_those_of_their_raw_users() {
    require_kafka();
    require_registry();
    let _registry = stores_shared();
    let (raw, clean) = (unique("it_aggc_raw"), unique("it_aggc_clean"));
    let ingest =
        run(rtds().args(["ingest", "--source", "generate", "--count", "300", "--seed", "5", "--topic", &raw]), RUN);
    assert!(ingest.status.success(), "{}", stderr(&ingest));
    let transform = run(
        rtds()
            .args(["transform", "--input-topic", &raw, "--output-topic", &clean, "--output-format", "avro"])
            .args(["--dlq-topic", &unique("it_aggc_dlq")]),
        RUN,
    );
    assert!(transform.status.success(), "{}", stderr(&transform));
    let by_gender = |table: &str, input: &str, event_time: &str| {
        let sql = std::env::temp_dir().join(format!("{}.sql", unique("it_aggc")));
        let text = format!(
            "SELECT tumble(interval '30 days') AS window, gender, count(*) AS signups FROM {table} GROUP BY window, gender"
        );
        std::fs::write(&sql, text).unwrap();
        let out = unique("it_aggc_out");
        let o = run(
            rtds()
                .args(["aggregate", "--input-topic", input, "--output-topic", &out, "--group", &unique("it_aggc_g")])
                .args(["--event-time", event_time, "--allowed-lateness", "50y", "--sql"])
                .arg(&sql),
            RUN,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!((summary(&o)["in"].as_u64(), summary(&o)["dlq"].as_u64()), (Some(300), Some(0)), "{table}");
        let _ = std::fs::remove_file(&sql);
        read_all(&out, RUN)
            .iter()
            .map(|m| {
                let row: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                let start = row["window"]["start"].as_str().unwrap().to_owned();
                ((start, row["gender"].as_str().unwrap().to_owned()), row["signups"].as_i64().unwrap())
            })
            .collect::<BTreeMap<_, _>>()
    };
    let from_raw = by_gender("users_raw", &raw, "registered['date']");
    assert!(from_raw.len() > 20, "{}", from_raw.len());
    assert_eq!(by_gender("users_created", &clean, "registered_date"), from_raw);
}
