//! `rtds load --sink delta` against a real Delta table on disk: a kill -9
//! between the Delta commit and the Kafka offset commit (the fault hook), and
//! two `--follow` replicas across rebalances, leave every id once; reconcile
//! checks the table; `rtds query` reads it as of a version and a time;
//! `rtds maintain` makes fewer files of the same rows.

use std::path::Path;
use std::time::Duration;

use rdkafka::message::Message;
use serde_json::Value;

use crate::harness::*;
use crate::load::{Owned, Rows, Target, as_refs, clean_rows, ok};

const RUN: Duration = Duration::from_secs(180);

/// The table's rows by `rtds query` (as of `at`: `--version N`, `--as-of T`), and how many there are.
fn table_rows(out: &Path, at: &[&str]) -> (usize, Rows) {
    let q = run(rtds().args(["query", "--out"]).arg(out).args(at).arg("SELECT * FROM created_users"), RUN);
    assert!(q.status.success(), "{}", stderr(&q));
    let lines: Vec<Value> = stdout(&q).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rows: Rows = lines
        .iter()
        .map(|v| {
            let cells: Vec<Option<String>> = rtds::row::names().map(|c| v[c].as_str().map(str::to_owned)).collect();
            (cells[0].clone().unwrap(), cells)
        })
        .collect();
    (lines.len(), rows)
}

/// The data files in the table's directory (every version's, not vacuumed).
fn data_files(out: &Path) -> usize {
    std::fs::read_dir(out.join("created_users"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".parquet"))
        .count()
}

#[test]
fn a_kill_between_the_delta_commit_and_the_offsets_writes_nothing_twice() {
    require_kafka();
    let (topic, want) = clean_rows("it_delta_kill", 3000, "81");
    let target = Target::new("it_delta_kill");
    let group = unique("g");
    // The third batch's commit lands, then the process dies before its offsets are committed.
    let killed = run(
        target.load("delta", &topic, &group).args(["--batch-size", "500"]).env("RTDS_FAULT_KILL_AT_DELTA_COMMIT", "3"),
        RUN,
    );
    assert!(!killed.status.success(), "the hook killed the load: {}", stderr(&killed));
    assert!(stderr(&killed).contains("killing the process at DELTA_COMMIT"), "{}", stderr(&killed));
    let (before, _) = table_rows(&target.out, &[]);
    assert!((1500..3000).contains(&before), "three batches in the table before the rerun: {before}");
    let s = ok(&run(target.load("delta", &topic, &group).args(["--batch-size", "500"]), RUN));
    assert!(s["in"].as_u64().unwrap() > (3000 - before) as u64, "the rerun read the killed batch again: {s}");
    let (n, rows) = table_rows(&target.out, &[]);
    assert_eq!((n, rows), (3000, want), "every id once in the Delta table");
}

#[test]
fn two_follow_replicas_across_rebalances_write_every_id_once() {
    require_kafka();
    let (source, want) = clean_rows("it_delta_two", 4000, "82");
    let records: Vec<Owned> = consume(&source, 4000, RUN)
        .iter()
        .map(|m| (m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)))
        .collect();
    let topic = unique("it_delta_two_t");
    let target = Target::new("it_delta_two");
    let group = unique("g");
    let follow = |kill_at: Option<&str>| {
        let mut cmd = target.load("delta", &topic, &group);
        cmd.args(["--follow", "--batch-size", "200", "--max-wait", "50ms"]);
        if let Some(n) = kill_at {
            cmd.env("RTDS_FAULT_KILL_AT_DELTA_COMMIT", n);
        }
        spawn(&mut cmd)
    };
    let count =
        || if target.out.join("created_users/_delta_log").is_dir() { table_rows(&target.out, &[]).0 } else { 0 };
    produce(&topic, &as_refs(&records[..1000]));
    // A dies right after a commit of its, its offsets not committed: B reads those records again.
    let a = follow(Some("4"));
    wait_for("the first rows", RUN, || (count() > 0).then_some(()));
    let b = follow(None);
    produce(&topic, &as_refs(&records[1000..2500]));
    let a = wait_child(a, RUN);
    assert!(stderr(&a).contains("killing the process at DELTA_COMMIT"), "{}", stderr(&a));
    let c = follow(None);
    produce(&topic, &as_refs(&records[2500..]));
    wait_for("every row in the table", RUN, || (count() >= 4000).then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    for child in [&b, &c] {
        terminate(child);
    }
    for child in [b, c] {
        ok(&wait_child(child, RUN));
    }
    let (n, rows) = table_rows(&target.out, &[]);
    assert_eq!((n, rows), (4000, want), "every id once in the Delta table");
}

#[test]
fn reconcile_time_travel_and_maintenance_of_a_delta_table() {
    require_kafka();
    let (raw, created, dlq) = (unique("it_delta_rec_raw"), unique("it_delta_rec_c"), unique("it_delta_rec_dlq"));
    let step = |cmd: &mut std::process::Command| {
        let out = run(cmd, RUN);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).lines().last().unwrap().to_owned()
    };
    let ingested =
        step(rtds().args(["ingest", "--source", "generate", "--count", "1200", "--seed", "83", "--topic", &raw]));
    let transformed =
        step(rtds().args(["transform", "--input-topic", &raw, "--output-topic", &created, "--dlq-topic", &dlq]));
    let target = Target::new("it_delta_rec");
    let loaded =
        step(target.load_from("delta", &created, &transformed).args(["--batch-size", "100", "--dlq-topic", &dlq]));
    let reconcile = |load: &str| run(rtds().args(["reconcile", &ingested, &transformed, load]), RUN);
    let rec = reconcile(&loaded);
    assert!(rec.status.success(), "reconcile of the Delta load: {}{}", stdout(&rec), stderr(&rec));

    // Time travel: version 0 is the empty table, version 1 the first commit.
    let created_at = chrono::Utc::now();
    let (first, _) = table_rows(&target.out, &["--version", "1"]);
    assert!(first > 0 && first < 1200, "one batch at version 1: {first}");
    let before = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let q = run(rtds().args(["query", "--out"]).arg(&target.out).args(["--as-of", &before, "SELECT 1"]), RUN);
    assert!(!q.status.success(), "no version of the table a day ago");
    let (now, latest) = table_rows(&target.out, &["--as-of", &created_at.to_rfc3339()]);
    assert_eq!(now, 1200);

    // Maintenance: fewer files, the same rows; older files gone after vacuum.
    let files = data_files(&target.out);
    assert!(files >= 10, "a file per batch: {files}");
    std::thread::sleep(Duration::from_secs(2));
    let maintain = || {
        let m = run(rtds().args(["maintain", "--retention", "1s", "--out"]).arg(&target.out), RUN);
        assert!(m.status.success(), "{}", stderr(&m));
        summary(&m)
    };
    let s = maintain();
    assert_eq!((s["files_before"].as_u64(), s["files_after"].as_u64()), (Some(files as u64), Some(1)), "{s}");
    // The small files were removed just now: younger than the retention, vacuum keeps them.
    assert_eq!((s["vacuumed"].as_u64(), data_files(&target.out)), (Some(0), files + 1), "{s}");
    assert_eq!(table_rows(&target.out, &[]), (1200, latest.clone()), "the same rows after compaction");
    std::thread::sleep(Duration::from_secs(2));
    let s = maintain();
    assert_eq!((s["files_before"].as_u64(), s["vacuumed"].as_u64()), (Some(1), Some(files as u64)), "{s}");
    assert_eq!(data_files(&target.out), 1);
    assert_eq!(table_rows(&target.out, &[]), (1200, latest), "the same rows after maintenance");

    // The same ranges loaded again: the table holds them (their versions say so), nothing is written.
    let again: Value =
        serde_json::from_str(&step(target.load_from("delta", &created, &transformed).args(["--dlq-topic", &dlq])))
            .unwrap();
    assert_eq!(again["in"].as_u64(), Some(1200), "{again}");
    assert_eq!(table_rows(&target.out, &[]).0, 1200, "a rerun of the same ranges writes nothing");
    // The same rows through a consumer group: another stream, so appended again; reconcile names them.
    let twice = step(target.load("delta", &created, &unique("g2")).args(["--dlq-topic", &dlq]));
    assert_eq!(table_rows(&target.out, &[]).0, 2400);
    let rec = reconcile(&twice);
    assert!(!rec.status.success(), "reconcile finds every id twice: {}", stdout(&rec));
    assert!(stdout(&rec).contains("1200 of 1200 id(s) held more than once"), "{}", stdout(&rec));
}

/// The `.parquet` files under `dir`, at any depth (a partitioned table's are in `column=value/`).
fn parquet_files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() && !path.ends_with("_delta_log") {
            found.extend(parquet_files_under(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_table_partitioned_on_request_reads_back_whole_and_keeps_its_partitioning() {
    require_kafka();
    let (topic, want) = clean_rows("it_delta_part", 1500, "84");
    let target = Target::new("it_delta_part");
    let table = target.out.join("created_users");
    let load = |group: &str, partition_by: &[&str]| {
        let mut cmd = target.load("delta", &topic, group);
        cmd.args(["--batch-size", "300"]).args(partition_by);
        run(&mut cmd, RUN)
    };
    ok(&load(&unique("g"), &["--partition-by", "gender"]));
    let log = std::fs::read_to_string(table.join("_delta_log/00000000000000000000.json")).unwrap();
    assert!(log.contains(r#""partitionColumns":["gender"]"#), "{log}");
    let files = parquet_files_under(&table);
    let genders: std::collections::BTreeSet<String> = want.values().map(|cells| cells[3].clone().unwrap()).collect();
    assert!(genders.len() > 1, "{genders:?}");
    assert!(files.len() >= 5, "a file per batch and gender: {files:?}");
    for file in &files {
        let dir = file.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let gender = dir.strip_prefix("gender=").unwrap_or_else(|| panic!("{} outside a partition", file.display()));
        assert!(genders.contains(gender), "{dir}");
    }
    // The partition column, not in the files, is read back from the log with every row.
    assert_eq!(table_rows(&target.out, &[]), (1500, want.clone()), "every row whole");

    // Compaction keeps the partitions apart: a file for each gender, the same rows.
    std::thread::sleep(Duration::from_secs(2));
    let m = run(rtds().args(["maintain", "--retention", "1s", "--out"]).arg(&target.out), RUN);
    let s = summary(&m);
    assert_eq!(s["files_after"].as_u64(), Some(genders.len() as u64), "{s}");
    assert_eq!(table_rows(&target.out, &[]), (1500, want), "the same rows after compaction");

    // A load that names no partitioning writes into the table's; another partitioning is refused.
    let refused = load(&unique("g"), &["--partition-by", "post_code"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains(r#"partitioned by ["gender"]"#), "{}", stderr(&refused));
    ok(&load(&unique("g"), &[]));
    assert_eq!(table_rows(&target.out, &[]).0, 3000, "a second group appends its rows");
    for bad in [["--partition-by", "id"], ["--partition-by", "nosuch"]] {
        let other = Target::new("it_delta_part_bad");
        let out = run(other.load("delta", &topic, &unique("g")).args(bad), RUN);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    }
    let parquet = run(target.load("parquet", &topic, &unique("g")).args(["--partition-by", "gender"]), RUN);
    assert_eq!(parquet.status.code(), Some(2), "{}", stderr(&parquet));
    assert!(stderr(&parquet).contains("--partition-by is for --sink delta"), "{}", stderr(&parquet));
}
