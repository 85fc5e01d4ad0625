//! `rtds transform` against real Kafka: the contract vectors, broken records to
//! the DLQ, custom SQL, bounded re-runs, kill -9 and exactly-once.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rdkafka::message::{Message, OwnedMessage};
use serde_json::Value;

use crate::harness::*;

const RUN: Duration = Duration::from_secs(180);

/// Unique input/output/DLQ topics for one test.
struct Topics {
    input: String,
    output: String,
    dlq: String,
}

impl Topics {
    fn new(name: &str) -> Self {
        Self {
            input: unique(&format!("{name}_raw")),
            output: unique(&format!("{name}_out")),
            dlq: unique(&format!("{name}_dlq")),
        }
    }

    fn transform(&self) -> std::process::Command {
        let mut cmd = rtds();
        cmd.args(["transform", "--input-topic", &self.input, "--output-topic", &self.output, "--dlq-topic", &self.dlq]);
        cmd.args(["--group", &format!("{}_group", self.input)]);
        cmd
    }
}

fn lines(name: &str) -> Vec<Vec<u8>> {
    fixture(name).split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

/// Output rows by id, as JSON objects with nulls removed (null and absent are the same).
fn rows_by_id(msgs: &[OwnedMessage]) -> BTreeMap<String, Value> {
    msgs.iter()
        .map(|m| {
            let mut v: Value = serde_json::from_slice(m.payload().unwrap()).expect("output row is JSON");
            v.as_object_mut().unwrap().retain(|_, x| !x.is_null());
            let id = v["id"].as_str().unwrap().to_owned();
            assert_eq!(m.key(), Some(id.as_bytes()), "key is the row's id");
            (id, v)
        })
        .collect()
}

fn expected_rows(files: &[&str]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in files {
        for line in lines(f).into_iter().filter(|l| !l.is_empty()) {
            let mut v: Value = serde_json::from_slice(&line).unwrap();
            v.as_object_mut().unwrap().retain(|_, x| !x.is_null());
            out.insert(v["id"].as_str().unwrap().to_owned(), v);
        }
    }
    out
}

fn ok_summary(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "transform failed: {}", stderr(out));
    let s = summary(out);
    assert_eq!(s["stage"], "transform");
    assert_eq!(
        s["in"].as_u64().unwrap(),
        s["out"].as_u64().unwrap() + s["dlq"].as_u64().unwrap() + s["filtered"].as_u64().unwrap(),
        "in = out + dlq + filtered: {s}"
    );
    s
}

#[test]
fn contract_vectors_become_the_expected_rows() {
    require_kafka();
    let t = Topics::new("it_tr_golden");
    let mut raw: Vec<Vec<u8>> = lines("contract/users_raw.jsonl").into_iter().filter(|l| !l.is_empty()).collect();
    raw.push(lines("raw_missing_optional.json").remove(0));
    let records: Vec<Record> = raw.iter().map(|r| (None, Some(r.as_slice()))).collect();
    produce(&t.input, &records);

    let out = run(&mut t.transform(), RUN);
    let s = ok_summary(&out);
    assert_eq!((s["in"].as_u64(), s["out"].as_u64(), s["dlq"].as_u64()), (Some(4), Some(4), Some(0)), "{s}");
    let got = rows_by_id(&consume(&t.output, 4, RUN));
    let want = expected_rows(&["contract/users_created.jsonl", "created_missing_optional.json"]);
    assert_eq!(got.len(), want.len());
    for (id, row) in &want {
        assert_eq!(got.get(id), Some(row), "row {id}");
    }
}

#[test]
fn broken_records_reach_the_dlq_with_reasons_and_neighbours_survive() {
    require_kafka();
    let t = Topics::new("it_tr_dlq");
    let good = lines("contract/users_raw.jsonl");
    let mut bad: Vec<Vec<u8>> = lines("contract/users_dlq.txt");
    // users_dlq.txt's last line is the empty payload; split() yields it (and maybe a trailing one).
    while bad.len() > 6 {
        bad.pop();
    }
    assert_eq!(bad.len(), 6);
    bad.push(lines("raw_wrong_types.json").remove(0));
    bad.push(
        format!(r#"{{"login":{{"uuid":"1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"}},"pad":"{}"}}"#, "x".repeat(2 << 20))
            .into_bytes(),
    );
    bad.push(b"{\"gender\":\"\xff\xfe\"}".to_vec());
    let mut records: Vec<Record> = vec![(Some(b"k0"), Some(good[0].as_slice()))];
    for b in &bad {
        records.push((Some(b"bad"), Some(b.as_slice())));
    }
    records.push((Some(b"null"), None));
    records.push((Some(b"k1"), Some(good[1].as_slice())));
    produce(&t.input, &records);
    let n_bad = bad.len() + 1;

    let out = run(&mut t.transform(), RUN);
    let s = ok_summary(&out);
    assert_eq!((s["out"].as_u64(), s["dlq"].as_u64()), (Some(2), Some(n_bad as u64)), "{s}");
    let rows = rows_by_id(&consume(&t.output, 2, RUN));
    let want = expected_rows(&["contract/users_created.jsonl"]);
    for id in rows.keys() {
        assert_eq!(rows.get(id), want.get(id), "a neighbour of the bad records came out wrong");
    }

    let dlq = consume(&t.dlq, n_bad, RUN);
    let payloads: HashSet<Vec<u8>> = dlq.iter().map(|m| m.payload().unwrap_or_default().to_vec()).collect();
    for b in &bad {
        assert!(
            payloads.contains(b),
            "original bytes of a bad record missing from the DLQ: {}",
            String::from_utf8_lossy(&b[..b.len().min(80)])
        );
    }
    for m in &dlq {
        let why = header(m, "rtds-error").expect("rtds-error header");
        assert!(!why.is_empty());
        assert_eq!(header(m, "rtds-stage").as_deref(), Some("transform"));
        assert_eq!(header(m, "rtds-source-topic").as_deref(), Some(t.input.as_str()));
        assert!(header(m, "rtds-source-partition").unwrap().parse::<i32>().is_ok());
        assert!(header(m, "rtds-source-offset").unwrap().parse::<i64>().is_ok());
    }
    let reasons: Vec<String> = dlq.iter().filter_map(|m| header(m, "rtds-error")).collect();
    for expected in [
        "missing login.uuid",
        "not a UUID",
        "malformed JSON",
        "not a JSON object",
        "empty payload",
        "null payload",
        "wrong type",
        "too large",
        "invalid UTF-8",
    ] {
        assert!(reasons.iter().any(|r| r.contains(expected)), "no DLQ reason mentions {expected:?}: {reasons:?}");
    }
}

#[test]
fn custom_sql_filters_and_derives() {
    require_kafka();
    let t = Topics::new("it_tr_sql");
    let out =
        run(rtds().args(["ingest", "--source", "generate", "--count", "400", "--seed", "5", "--topic", &t.input]), RUN);
    assert!(out.status.success(), "{}", stderr(&out));
    let raw = consume(&t.input, 400, RUN);
    let women: HashSet<String> = raw
        .iter()
        .map(|m| serde_json::from_slice::<Value>(m.payload().unwrap()).unwrap())
        .filter(|v| v["gender"] == "female")
        .map(|v| v["login"]["uuid"].as_str().unwrap().to_owned())
        .collect();
    assert!(!women.is_empty() && women.len() < 400);

    let sql = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/filter_women.sql");
    let out = run(t.transform().arg("--sql").arg(&sql), RUN);
    let s = ok_summary(&out);
    assert_eq!(s["out"].as_u64(), Some(women.len() as u64), "{s}");
    assert_eq!(s["filtered"].as_u64(), Some(400 - women.len() as u64), "{s}");
    let rows = rows_by_id(&consume(&t.output, women.len(), RUN));
    assert_eq!(rows.keys().cloned().collect::<HashSet<_>>(), women);
    for row in rows.values() {
        let full = row["full_name"].as_str().unwrap();
        let upper = row["last_name_upper"].as_str().unwrap();
        assert!(full.to_uppercase().ends_with(upper), "{row}");
    }
}

#[test]
fn invalid_sql_exits_2_with_datafusion_message() {
    let sql = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid.sql");
    let out = run(rtds().args(["transform", "--sql"]).arg(&sql), Duration::from_secs(60));
    assert_one_line_error(&out, 2);
    assert!(stderr(&out).contains("invalid SQL"), "{}", stderr(&out));
    let out = run(rtds().args(["transform", "--sql", "/nonexistent.sql"]), Duration::from_secs(60));
    assert_one_line_error(&out, 2);
}

/// Ingest `n` generated users into the input topic; their ids.
fn ingest(t: &Topics, n: usize, seed: &str) -> HashSet<String> {
    let out = run(
        rtds().args(["ingest", "--source", "generate", "--count", &n.to_string(), "--seed", seed, "--topic", &t.input]),
        RUN,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    consume(&t.input, n, RUN).iter().map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap()).collect()
}

#[test]
fn good_and_bad_reconcile_and_a_second_run_does_nothing() {
    require_kafka();
    let t = Topics::new("it_tr_rec");
    let ids = ingest(&t, 3000, "21");
    let bad: Vec<Vec<u8>> = (0..50).map(|i| format!("{{\"broken\": {i}").into_bytes()).collect();
    let records: Vec<Record> = bad.iter().map(|b| (None, Some(b.as_slice()))).collect();
    produce(&t.input, &records);

    let s = ok_summary(&run(t.transform().args(["--batch-size", "700"]), RUN));
    assert_eq!((s["in"].as_u64(), s["out"].as_u64(), s["dlq"].as_u64()), (Some(3050), Some(3000), Some(50)), "{s}");
    let out_ids: HashSet<String> = rows_by_id(&consume(&t.output, 3000, RUN)).into_keys().collect();
    assert_eq!(out_ids, ids);
    assert_eq!(topic_len(&t.dlq), 50);

    let again = ok_summary(&run(&mut t.transform(), RUN));
    assert_eq!((again["in"].as_u64(), again["out"].as_u64()), (Some(0), Some(0)), "second run: {again}");
}

/// Start a transform, kill -9 it once some output exists, run it again to the end.
fn kill_mid_run_then_finish(t: &Topics, extra: &[&str]) {
    let mut child = spawn(t.transform().args(["--batch-size", "1000"]).args(extra));
    let exited = wait_for("some transform output before the kill", RUN, || {
        if child.try_wait().unwrap().is_some() {
            return Some(true);
        }
        (topic_len(&t.output) >= 2000).then_some(false)
    });
    if exited {
        panic!("transform exited before the kill: {}", stderr(&wait_child(child, RUN)));
    }
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let s = ok_summary(&run(t.transform().args(["--batch-size", "1000"]).args(extra), RUN));
    assert!(s["in"].as_u64().unwrap() > 0, "the rerun had work left: {s}");
}

#[test]
fn kill_9_mid_run_loses_nothing() {
    require_kafka();
    let t = Topics::new("it_tr_kill");
    let ids = ingest(&t, 30_000, "31");
    kill_mid_run_then_finish(&t, &[]);
    // At least once: every id is there (a replayed tail may repeat some).
    let n = topic_len(&t.output) as usize;
    assert!(n >= 30_000, "{n} rows for 30000 inputs");
    let out_ids: HashSet<String> =
        consume(&t.output, n, RUN).iter().map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap()).collect();
    assert_eq!(out_ids, ids);
}

/// Ingest `n` generated users and `bad` broken records; the users' ids and the broken payloads.
fn ingest_with_broken(t: &Topics, n: usize, seed: &str, bad: usize) -> (HashSet<String>, HashSet<Vec<u8>>) {
    let ids = ingest(t, n, seed);
    let broken: Vec<Vec<u8>> = (0..bad).map(|i| format!("{{\"broken\": {i}").into_bytes()).collect();
    let records: Vec<Record> = broken.iter().map(|b| (None, Some(b.as_slice()))).collect();
    produce(&t.input, &records);
    (ids, broken.into_iter().collect())
}

/// Exactly once, as a read_committed consumer sees it: every good input once
/// in the output and every broken one once in the DLQ (never both, never
/// twice; `consume` fails on a record more than expected).
fn assert_exactly_once(t: &Topics, ids: &HashSet<String>, broken: &HashSet<Vec<u8>>, scenario: &str) {
    let msgs = consume(&t.output, ids.len(), RUN);
    let out_ids: Vec<String> = msgs.iter().map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap()).collect();
    let unique: HashSet<String> = out_ids.iter().cloned().collect();
    let lost = ids.iter().filter(|id| !unique.contains(*id)).count();
    crate::faults::report(scenario, ids.len(), Some(lost), Some(out_ids.len() - unique.len()), None);
    assert_eq!(out_ids.len(), unique.len(), "duplicates in the output");
    assert_eq!(&unique, ids, "the output holds every good input");
    let dead: Vec<Vec<u8>> = consume(&t.dlq, broken.len(), RUN).iter().map(|m| m.payload().unwrap().to_vec()).collect();
    assert_eq!(dead.len(), broken.len());
    assert_eq!(&dead.into_iter().collect::<HashSet<_>>(), broken, "every broken input once in the DLQ");
}

#[test]
fn exactly_once_survives_kill_9_without_duplicates() {
    require_kafka();
    let t = Topics::new("it_tr_eos");
    let (ids, broken) = ingest_with_broken(&t, 30_000, "41", 20);
    // Transactions of 4 batches: the kill lands inside an open one. A static member of its group:
    // the rerun takes the partitions back at once, not after its killed self's session.
    let member = format!("{}-{{hostname}}", unique("it-tr-eos"));
    kill_mid_run_then_finish(&t, &["--exactly-once", "--transaction-records", "4000", "--group-instance-id", &member]);
    assert_exactly_once(&t, &ids, &broken, "kill -9 transform --exactly-once, rerun");
}

// Drives the fault-test hook RTDS_FAULT_PAUSE_BEFORE_COMMIT, compiled in only with the feature.
#[cfg(feature = "fault-injection")]
#[test]
fn exactly_once_survives_kill_9_during_a_commit() {
    require_kafka();
    let t = Topics::new("it_tr_eos_commit");
    let (ids, broken) = ingest_with_broken(&t, 20_000, "43", 20);
    // Each commit pauses for 5 s once its outputs are acknowledged and its
    // offsets sent (a fault-test hook): the kill lands between the offsets
    // and the commit of the first transaction.
    let log = tempfile::NamedTempFile::new().unwrap();
    let args = ["--exactly-once", "--batch-size", "1000", "--transaction-records", "5000", "--transaction-every", "1h"];
    let mut child = t
        .transform()
        .args(args)
        .env("RTDS_FAULT_PAUSE_BEFORE_COMMIT", "5s")
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    wait_for("the first commit to pause", RUN, || {
        std::fs::read_to_string(log.path())
            .unwrap()
            .contains("pausing between the offsets and the commit")
            .then_some(())
    });
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let s = ok_summary(&run(t.transform().args(&args[..3]), RUN));
    assert_eq!(s["in"].as_u64(), Some(20_020), "the rerun read every input again: {s}");
    assert_exactly_once(&t, &ids, &broken, "kill -9 transform --exactly-once mid-commit, rerun");
}

// Drives the fault-test hooks RTDS_FAULT_PAUSE_BEFORE_COMMIT and _AT_COMMIT.
#[cfg(feature = "fault-injection")]
#[test]
fn exactly_once_follow_starts_over_in_process_when_its_transaction_timed_out() {
    require_kafka();
    let t = Topics::new("it_tr_eos_over");
    let (ids, broken) = ingest_with_broken(&t, 10_000, "49", 20);
    // The third commit pauses 14 s once its offsets are sent: past its 2 s timeout and the
    // broker's 10 s look for timed-out transactions, the coordinator aborts it and fences the
    // producer, as when a broker or the process stalls. The run goes on in process.
    let args = ["--follow", "--exactly-once", "--batch-size", "1000", "--transaction-records", "2000"];
    let child = spawn(
        t.transform()
            .args(args)
            .args(["--transaction-every", "1h", "--transaction-timeout", "2s"])
            .env("RTDS_FAULT_PAUSE_BEFORE_COMMIT", "14s")
            .env("RTDS_FAULT_PAUSE_AT_COMMIT", "3"),
    );
    wait_for("the output topic", RUN, || (topic_len(&t.output) > 0).then_some(()));
    assert_exactly_once(&t, &ids, &broken, "transform --follow --exactly-once, its transaction timed out mid-commit");
    terminate(&child);
    let out = wait_child(child, RUN);
    let s = ok_summary(&out);
    assert_eq!((s["restarts"].as_u64(), s["in"].as_u64()), (Some(1), Some(10_020)), "{s}");
    assert!(stderr(&out).contains("starting over from the last commit"), "{}", stderr(&out));
}

#[test]
fn exactly_once_fences_a_second_instance_with_the_same_transactional_id() {
    require_kafka();
    let t = Topics::new("it_tr_eos_fence");
    let (ids, broken) = ingest_with_broken(&t, 30_000, "47", 20);
    let id = unique("it_tr_eos_fence_txn");
    let args = ["--exactly-once", "--batch-size", "500", "--max-wait", "50ms"];
    let first = spawn(t.transform().args(args).arg("--follow").env("RTDS_TRANSACTIONAL_ID", &id));
    wait_for("the first instance's first rows", RUN, || (topic_len(&t.output) > 2000).then_some(()));
    // A second instance with the same id: the broker fences the first, which
    // stops with an error and commits nothing more; the second does the rest.
    let second = run(t.transform().args(args).env("RTDS_TRANSACTIONAL_ID", &id), RUN);
    let first = wait_child(first, RUN);
    assert!(!first.status.success(), "the fenced instance must stop with an error");
    assert!(stderr(&first).to_lowercase().contains("fenced"), "{}", stderr(&first));
    ok_summary(&second);
    assert_exactly_once(&t, &ids, &broken, "a second transform with the same transactional id");
}

#[test]
fn follow_streams_serves_metrics_and_stops_on_sigterm() {
    require_kafka();
    let t = Topics::new("it_tr_follow");
    ingest(&t, 500, "81");
    let addr = free_addr();
    let child = spawn(t.transform().args(["--follow", "--metrics-addr", &addr, "--max-wait", "50ms"]));
    wait_for("the first 500 rows", RUN, || (topic_len(&t.output) >= 500).then_some(()));
    // Records that arrive while it runs are transformed too.
    let out = run(
        rtds().args(["ingest", "--source", "generate", "--count", "100", "--seed", "82", "--topic", &t.input]),
        RUN,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the next 100 rows", RUN, || (topic_len(&t.output) >= 600).then_some(()));
    let metrics = wait_for("metrics counting 600 records", RUN, || {
        scrape(&addr).filter(|m| m.contains("rtds_records_in_total{stage=\"transform\"} 600"))
    });
    assert!(metrics.contains("rtds_batch_seconds"), "{metrics}");
    // Ready: it holds every partition of its input.
    assert!(metrics.contains("rtds_partitions_assigned{stage=\"transform\"} 3"), "{metrics}");
    terminate(&child);
    let out = wait_child(child, Duration::from_secs(60));
    let s = ok_summary(&out);
    assert_eq!((s["in"].as_u64(), s["out"].as_u64()), (Some(600), Some(600)), "{s}");
}

/// Offsets go to the group coordinator at most every second (src/kafka/consume.rs
/// `COMMIT_EVERY`); a `--follow` stage whose input goes idle sends what it held
/// back, so the group's position does not stay behind while nothing comes.
#[test]
fn follow_commits_held_back_offsets_when_its_input_goes_idle() {
    require_kafka();
    let t = Topics::new("it_tr_idlecommit");
    ingest(&t, 1_000, "85");
    // Batches of 100: the first batch's offsets are sent at once, the nine after it
    // come within the second and are held back.
    let child = spawn(t.transform().args(["--follow", "--batch-size", "100"]));
    wait_for("the 1000 rows", RUN, || (topic_len(&t.output) >= 1_000).then_some(()));
    let group = format!("{}_group", t.input);
    // The stage keeps running: only its idle-time send can store these.
    wait_for("the group's offsets at the end of the input", Duration::from_secs(10), || {
        let at: i64 = committed(&group, &t.input, 3, Duration::from_secs(10)).into_iter().flatten().sum();
        (at == 1_000).then_some(())
    });
    terminate(&child);
    ok_summary(&wait_child(child, Duration::from_secs(60)));
}

/// A batch that read its input to the end closes at once: waiting for more
/// would only add latency. With `--max-wait 1h`, rows come out only if it does.
#[test]
fn follow_batches_at_the_end_of_the_input_do_not_wait_to_fill() {
    require_kafka();
    let t = Topics::new("it_tr_nowait");
    ingest(&t, 300, "83");
    let child = spawn(t.transform().args(["--follow", "--max-wait", "1h"]));
    wait_for("the 300 rows", RUN, || (topic_len(&t.output) >= 300).then_some(()));
    let out =
        run(rtds().args(["ingest", "--source", "generate", "--count", "10", "--seed", "84", "--topic", &t.input]), RUN);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the next 10 rows", RUN, || (topic_len(&t.output) >= 310).then_some(()));
    terminate(&child);
    ok_summary(&wait_child(child, Duration::from_secs(60)));
}

#[test]
fn two_replicas_in_one_group_share_the_work_and_lose_nothing() {
    require_kafka();
    let t = Topics::new("it_tr_pair");
    let ids = ingest(&t, 20_000, "91");
    let args = ["--follow", "--batch-size", "500", "--max-wait", "50ms"];
    let first = spawn(t.transform().args(args));
    // The second joins mid-run: a rebalance while batches are in flight.
    wait_for("the first replica's first rows", RUN, || (topic_len(&t.output) > 1000).then_some(()));
    let second = spawn(t.transform().args(args));
    wait_for("every row", RUN, || (topic_len(&t.output) >= 20_000).then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    terminate(&first);
    terminate(&second);
    let (a, b) = (wait_child(first, Duration::from_secs(60)), wait_child(second, Duration::from_secs(60)));
    let (sa, sb) = (ok_summary(&a), ok_summary(&b));
    let processed = sa["in"].as_u64().unwrap() + sb["in"].as_u64().unwrap();
    assert!(processed >= 20_000, "{sa} {sb}");
    let n = topic_len(&t.output) as usize;
    let out_ids: HashSet<String> =
        consume(&t.output, n, RUN).iter().map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap()).collect();
    assert_eq!(out_ids, ids, "every id came out once the group rebalanced");
}

#[test]
fn two_exactly_once_replicas_across_a_rebalance_write_each_record_once() {
    require_kafka();
    let t = Topics::new("it_tr_eos_pair");
    // Enough that the first replica is still busy when the second joins (the
    // debug build does ~17,000 records/s since the one-pass decoder).
    let (ids, broken) = ingest_with_broken(&t, 400_000, "93", 20);
    let args = ["--follow", "--exactly-once", "--batch-size", "500", "--max-wait", "50ms"];
    let first = spawn(t.transform().args(args).env("RTDS_TRANSACTIONAL_ID", unique("it_tr_eos_pair_a")));
    wait_for("the first replica's first rows", RUN, || (topic_len(&t.output) > 1000).then_some(()));
    // The second joins mid-run: the first's open transaction is aborted at the
    // revocation, and each partition goes on from its last commit.
    let second = spawn(t.transform().args(args).env("RTDS_TRANSACTIONAL_ID", unique("it_tr_eos_pair_b")));
    assert_exactly_once(&t, &ids, &broken, "two transform --exactly-once replicas, one joining mid-run");
    terminate(&first);
    terminate(&second);
    let (a, b) = (wait_child(first, Duration::from_secs(60)), wait_child(second, Duration::from_secs(60)));
    let (sa, sb) = (ok_summary(&a), ok_summary(&b));
    let out = sa["out"].as_u64().unwrap() + sb["out"].as_u64().unwrap();
    assert_eq!(out, 400_000, "committed outputs of both replicas: {sa} {sb}");
    assert!(sa["in"].as_u64().unwrap() < 400_000, "the second replica joined while the first was still busy: {sa}");
    // The replicas' summaries balance against the offsets they read and
    // produced: an aborted transaction's records are in neither. (The test
    // produced the input: the chain is checked from the transform.)
    let transform_only = ["reconcile", "--from", "transform", "--to", "transform"];
    let rec = run(rtds().args(transform_only).arg(sa.to_string()).arg(sb.to_string()), RUN);
    assert!(rec.status.success(), "reconcile: {}{}", stdout(&rec), stderr(&rec));
}

/// Partitions of `topic`, from the broker's metadata.
fn partitions_of(topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    md.topics().first().map_or(0, |t| t.partitions().len())
}

#[test]
fn a_stage_creates_its_topics_with_the_partitions_and_replication_asked() {
    require_kafka();
    let t = Topics::new("it_tr_topics");
    ingest(&t, 100, "95");
    let s = ok_summary(&run(t.transform().args(["--partitions", "5"]), RUN));
    assert_eq!(s["out"].as_u64(), Some(100), "{s}");
    assert_eq!((partitions_of(&t.output), partitions_of(&t.dlq)), (5, 5), "the topics it created");
    assert_eq!(partitions_of(&t.input), 3, "an existing topic is left as it is");
    // More replicas than this one-broker stack has brokers: refused by Kafka, said in one line.
    let t = Topics::new("it_tr_topics_rf");
    let out = run(t.transform().args(["--replication-factor", "3"]), RUN);
    assert_one_line_error(&out, 1);
    assert!(stderr(&out).contains("creating topic"), "{}", stderr(&out));
}

#[test]
fn a_bounded_run_held_below_its_end_by_an_open_transaction_fails_naming_it() {
    use rdkafka::producer::{BaseRecord, Producer};
    require_kafka();
    let t = Topics::new("it_tr_open_txn");
    // A transaction left open on partition 0 (as a producer that hangs leaves
    // it), then a run's records after it: a read_committed reader sees none of
    // them until the transaction ends.
    let producer = transactional_producer("it_open_txn");
    let created = rtds().args(["ingest", "--source", "generate", "--count", "1", "--topic", &t.input]).output();
    assert!(created.unwrap().status.success(), "the topic, made by rtds as a run makes it");
    producer.begin_transaction().unwrap();
    producer.send(BaseRecord::to(&t.input).partition(0).key("k").payload("{\"open\":1}")).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let ingested = run(
        rtds().args(["ingest", "--source", "generate", "--count", "300", "--seed", "41", "--topic", &t.input]),
        RUN,
    );
    let ingested = stdout(&ingested).lines().last().unwrap().to_owned();
    let from_summary = || {
        let mut cmd = rtds();
        cmd.args(["transform", "--input-topic", &t.input, "--output-topic", &t.output, "--dlq-topic", &t.dlq])
            .env("RTDS_FROM_SUMMARY", &ingested);
        cmd
    };
    let out = run(from_summary().args(["--end-wait", "3s"]), RUN);
    assert_one_line_error(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(&format!("{}/0 ends at offset", t.input)) && err.contains("open transaction"), "{err}");
    // Aborted: its record is skipped and the run reads its range to the end.
    producer.abort_transaction(Duration::from_secs(30)).unwrap();
    let s = ok_summary(&run(&mut from_summary(), RUN));
    assert_eq!(s["in"].as_u64(), Some(300), "{s}");
}

#[test]
fn an_exactly_once_range_run_killed_and_retried_writes_each_record_once() {
    require_kafka();
    let t = Topics::new("it_tr_eos_retry");
    const N: usize = 300_000;
    let out = run(
        rtds().args(["ingest", "--source", "generate", "--count", &N.to_string(), "--seed", "52", "--topic", &t.input]),
        RUN,
    );
    let ingested = stdout(&out).lines().last().unwrap().to_owned();
    // The DAG's task: the offsets ingest produced, in Kafka transactions, retried after a kill.
    let task = || {
        let mut cmd = rtds();
        cmd.args(["transform", "--input-topic", &t.input, "--output-topic", &t.output, "--dlq-topic", &t.dlq])
            .args(["--exactly-once", "--batch-size", "1000"])
            .env("RTDS_FROM_SUMMARY", &ingested);
        cmd
    };
    let mut first = spawn(&mut task());
    let ended = wait_for("the first attempt's output under way", RUN, || {
        if first.try_wait().unwrap().is_some() {
            return Some(true);
        }
        (written(&t.output) >= (N / 10) as i64).then_some(false)
    });
    if ended {
        panic!("the first attempt ended before the kill: {}", stderr(&wait_child(first, RUN)));
    }
    first.kill().expect("kill -9");
    first.wait().unwrap();
    let retry = ok_summary(&run(&mut task(), RUN));
    assert_eq!(retry["out"].as_u64(), Some(N as u64), "{retry}");
    let once = || {
        let keys: Vec<Vec<u8>> = read_all(&t.output, RUN).iter().map(|m| m.key().unwrap().to_vec()).collect();
        let distinct: HashSet<&Vec<u8>> = keys.iter().collect();
        assert_eq!((keys.len(), distinct.len()), (N, N), "each id once for a read_committed reader");
    };
    once();
    // Done and retried again (killed after its commit, before Airflow heard of it): refused, nothing written.
    let again = run(&mut task(), RUN);
    assert_one_line_error(&again, 1);
    assert!(stderr(&again).contains("written, exactly once, by an earlier attempt"), "{}", stderr(&again));
    once();
}

/// Records written to `topic` so far, committed or not (the high watermarks a
/// read_uncommitted reader sees: a transaction's records count before it commits).
fn written(topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    (0..3).map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).map_or(0, |(lo, hi)| hi - lo)).sum()
}
