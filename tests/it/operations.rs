//! Day-two operations against the real broker: bounded runs over a time range
//! (`--from-time`, `--to-time`: the offsets looked up by the records' stamps),
//! and `rtds offsets` showing and resetting a group.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const RUN: Duration = Duration::from_secs(120);

/// The (partition, first, last) spans of `topic` in a summary's `key` ranges.
fn spans(summary: &Value, key: &str, topic: &str) -> BTreeSet<(i64, i64, i64)> {
    summary[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {summary}"))
        .iter()
        .filter(|s| s["topic"] == topic)
        .map(|s| (s["partition"].as_i64().unwrap(), s["first"].as_i64().unwrap(), s["last"].as_i64().unwrap()))
        .collect()
}

fn ok(cmd: &mut std::process::Command) -> Value {
    let out = run(cmd, RUN);
    assert!(out.status.success(), "{}", stderr(&out));
    summary(&out)
}

/// Three ingests into one topic, a moment apart: their summaries, and the two
/// times between them.
fn three_ingests(name: &str) -> (String, [Value; 3], [String; 2]) {
    let raw = unique(name);
    let ingest = |seed: &str| {
        ok(rtds().args(["ingest", "--source", "generate", "--count", "300", "--seed", seed, "--topic", &raw]))
    };
    let pause = || std::thread::sleep(Duration::from_millis(300));
    let first = ingest("91");
    pause();
    let t1 = chrono::Utc::now().to_rfc3339();
    pause();
    let second = ingest("92");
    pause();
    let t2 = chrono::Utc::now().to_rfc3339();
    pause();
    let third = ingest("93");
    (raw, [first, second, third], [t1, t2])
}

#[test]
fn a_time_range_reads_the_records_stamped_in_it_and_commits_nothing() {
    require_kafka();
    let (raw, ingests, [t1, t2]) = three_ingests("it_time_raw");
    let transform = |range: &[&str]| {
        let (out, dlq) = (unique("it_time_out"), unique("it_time_dlq"));
        ok(rtds().args(["transform", "--input-topic", &raw, "--output-topic", &out, "--dlq-topic", &dlq]).args(range))
    };
    for (range, ingest) in [
        (vec!["--from-time", &t1, "--to-time", &t2], &ingests[1]),
        (vec!["--to-time", &t1], &ingests[0]),
        (vec!["--from-time", &t2], &ingests[2]),
    ] {
        let s = transform(&range);
        assert_eq!(s["in"], 300, "{range:?}: {s}");
        assert_eq!(
            spans(&s, "consumed", &raw),
            spans(ingest, "produced", &raw),
            "{range:?}: the offsets of one ingest"
        );
    }
    // No group read the topic: the default group has no offsets on it.
    assert_eq!(committed("rtds-transform", &raw, 3, Duration::from_secs(10)), vec![None; 3]);
    let backwards = run(rtds().args(["transform", "--input-topic", &raw, "--from-time", &t2, "--to-time", &t1]), RUN);
    assert_one_line_error(&backwards, 2);
    let with_group = run(rtds().args(["transform", "--input-topic", &raw, "--from-time", &t1, "--group", "g"]), RUN);
    assert_eq!(with_group.status.code(), Some(2), "{}", stderr(&with_group));
}

#[test]
fn offsets_shows_a_group_and_resets_it_to_a_time_but_not_while_it_reads() {
    require_kafka();
    let (raw, ingests, [_, t2]) = three_ingests("it_offsets_raw");
    let group = unique("it_offsets_g");
    let (out, dlq) = (unique("it_offsets_out"), unique("it_offsets_dlq"));
    let transform = || {
        let mut cmd = rtds();
        cmd.args(["transform", "--input-topic", &raw, "--output-topic", &out, "--dlq-topic", &dlq, "--group", &group]);
        cmd
    };
    assert_eq!(ok(&mut transform())["in"], 900);
    let offsets = |args: &[&str]| ok(rtds().args(["offsets", "--topic", &raw]).args(args));

    let shown = offsets(&["--group", &group]);
    let g = &shown["groups"][0];
    assert_eq!((g["group"].as_str(), g["lag"].as_i64(), g["members"].as_i64()), (Some(&*group), Some(0), Some(0)));
    for p in g["partitions"].as_array().unwrap() {
        assert_eq!(p["committed"], p["high"], "{p}");
    }
    // Without --group: the groups that read the topic, this one among them.
    let all = offsets(&[]);
    let names: Vec<&str> = all["groups"].as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(names, vec![group.as_str()], "{all}");

    let before = committed(&group, &raw, 3, Duration::from_secs(10));
    let dry = offsets(&["--group", &group, "--reset-to", "earliest", "--dry-run"]);
    assert_eq!(dry["reset"], "dry run: nothing committed");
    assert!(dry["groups"][0]["partitions"].as_array().unwrap().iter().all(|p| p["reset_to"] == p["low"]), "{dry}");
    assert_eq!(committed(&group, &raw, 3, Duration::from_secs(10)), before, "a dry run commits nothing");

    // To the time before the third ingest: the group's next run reads that ingest again, and only it.
    let reset = offsets(&["--group", &group, "--reset-to", &t2]);
    assert_eq!(reset["reset"], "committed");
    let again = ok(&mut transform());
    assert_eq!(again["in"], 300, "{again}");
    assert_eq!(spans(&again, "consumed", &raw), spans(&ingests[2], "produced", &raw));

    // A group with a member reading is left alone.
    let mut follow = transform();
    let child = spawn(follow.arg("--follow"));
    wait_for("the follower to join", RUN, || {
        let s = offsets(&["--group", &group]);
        (s["groups"][0]["members"].as_i64() > Some(0)).then_some(())
    });
    let refused = run(rtds().args(["offsets", "--topic", &raw, "--group", &group, "--reset-to", "earliest"]), RUN);
    assert_one_line_error(&refused, 2);
    assert!(stderr(&refused).contains("active member"), "{}", stderr(&refused));
    terminate(&child);
    wait_child(child, RUN);
    let unnamed = run(rtds().args(["offsets", "--topic", &raw, "--reset-to", "latest"]), RUN);
    assert_one_line_error(&unnamed, 2);
}
