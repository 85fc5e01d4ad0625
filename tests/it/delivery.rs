//! Delivery you can prove: `rtds reconcile` passes a clean run and names what
//! is missing from a broken one; a failed delivery commits nothing; rows a
//! store refuses go to the DLQ; a bounded run ends beside a `--follow` service;
//! the lag gauge moves while a store is blocked.

use std::collections::HashSet;
use std::process::Output;
use std::time::Duration;

use rdkafka::message::Message;
use serde_json::Value;

use crate::harness::*;
use crate::load::{Target, clean_rows, ok};

const RUN: Duration = Duration::from_secs(180);

/// The summary line of a run that succeeded.
fn line(o: &Output) -> String {
    assert!(o.status.success(), "stage failed: {}", stderr(o));
    stdout(o).lines().last().unwrap_or_default().to_owned()
}

fn ingest(topic: &str, n: usize, seed: &str, extra: &[&str]) -> String {
    line(&run(
        rtds()
            .args(["ingest", "--source", "generate", "--count", &n.to_string(), "--seed", seed, "--topic", topic])
            .args(extra),
        RUN,
    ))
}

/// The topics and store of one pipeline run, and its summaries.
struct Chain {
    target: Target,
    ingest: String,
    transform: String,
    loads: Vec<String>,
}

impl Chain {
    /// Ingest `n` users, transform what ingest produced, load what transform
    /// produced into each of `sinks`: the DAG's way.
    fn run(name: &str, n: usize, sinks: &[&str]) -> Self {
        Self::into(Target::new(name), name, n, sinks, "31")
    }

    /// The same, into `target`'s stores, with the generator's `seed`.
    fn into(target: Target, name: &str, n: usize, sinks: &[&str], seed: &str) -> Self {
        Self::ingesting(target, name, n, sinks, seed, &[])
    }

    /// The same, the ingest given `extra` arguments.
    fn ingesting(target: Target, name: &str, n: usize, sinks: &[&str], seed: &str, extra: &[&str]) -> Self {
        let (raw, created, dlq) =
            (unique(&format!("{name}_raw")), unique(&format!("{name}_c")), unique(&format!("{name}_d")));
        let ingest = ingest(&raw, n, seed, extra);
        let transform = line(&run(
            rtds()
                .args(["transform", "--input-topic", &raw, "--output-topic", &created, "--dlq-topic", &dlq])
                .env("RTDS_FROM_SUMMARY", &ingest),
            RUN,
        ));
        let loads = sinks
            .iter()
            .map(|sink| line(&run(target.load_from(sink, &created, &transform).args(["--dlq-topic", &dlq]), RUN)))
            .collect();
        Self { target, ingest, transform, loads }
    }

    fn summaries(&self) -> Vec<String> {
        [self.ingest.clone(), self.transform.clone()].into_iter().chain(self.loads.iter().cloned()).collect()
    }
}

fn reconcile(summaries: &[String]) -> Output {
    run(rtds().arg("reconcile").args(summaries), RUN)
}

#[test]
fn a_clean_run_reconciles_and_rows_deleted_from_each_store_are_named() {
    require_kafka();
    let _stores = stores_shared();
    let chain = Chain::run("it_rec", 600, &["postgres", "cassandra", "parquet"]);
    let out = reconcile(&chain.summaries());
    assert!(out.status.success(), "{}", stderr(&out));
    let report = summary(&out);
    assert_eq!(report["ok"], true, "{report}");
    for load in ["load_postgres", "load_cassandra", "load_parquet"] {
        assert_eq!(report["stores"][load]["found"], 600, "{report}");
    }
    assert_eq!(report["stores"]["load_parquet"]["duplicated"], 0, "{report}");
    assert_eq!(report["stores"]["load_postgres"]["records"], 600, "{report}");
    assert_eq!((&report["scope"], &report["partial"]), (&Value::from("ingest..load"), &Value::from(false)));

    // A broken chain: the transform's summary lost (killed with -9), or only the load's.
    let (i, l) = (chain.ingest.clone(), chain.loads[0].clone());
    let empty = reconcile(&[i.clone(), String::new(), l.clone()]);
    assert_one_line_error(&empty, 1);
    assert!(stderr(&empty).contains("summary 2 of 3 is empty"), "{}", stderr(&empty));
    let gap = reconcile(&[i.clone(), l.clone()]);
    assert_one_line_error(&gap, 1);
    assert!(stderr(&gap).contains("ingest -> transform: no transform summary"), "{}", stderr(&gap));
    let alone = reconcile(std::slice::from_ref(&l));
    assert_one_line_error(&alone, 1);
    assert!(stderr(&alone).contains("no ingest summary"), "{}", stderr(&alone));
    let partial = run(rtds().args(["reconcile", "--from", "load"]).arg(&l), RUN);
    assert!(partial.status.success(), "{}", stderr(&partial));
    assert_eq!(summary(&partial)["partial"], true, "a partial check says so");
    let mixed = run(rtds().args(["reconcile", "--from", "load"]).args([&i, &l]), RUN);
    assert_one_line_error(&mixed, 2);

    // Rows go missing from every store between load and reconcile.
    let rt = runtime();
    let pg = postgres(&rt);
    let t = &chain.target;
    let gone_pg: Vec<String> = rt
        .block_on(pg.query(
            &format!(
                "DELETE FROM {}.created_users WHERE id IN (SELECT id FROM {}.created_users LIMIT 3) RETURNING id::text",
                t.schema, t.schema
            ),
            &[],
        ))
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(gone_pg.len(), 3);
    let cql = cassandra(&rt);
    let victim = gone_pg[0].clone();
    let other: uuid::Uuid = rt.block_on(async {
        let rows =
            cql.query_unpaged(format!("SELECT id FROM {}.created_users LIMIT 1", t.keyspace), &[]).await.unwrap();
        rows.into_rows_result().unwrap().first_row::<(uuid::Uuid,)>().unwrap().0
    });
    rt.block_on(cql.query_unpaged(format!("DELETE FROM {}.created_users WHERE id = ?", t.keyspace), (other,))).unwrap();
    let parquet_dir = t.out.join("created_users");
    let file = std::fs::read_dir(&parquet_dir).unwrap().next().unwrap().unwrap().path();
    std::fs::remove_file(&file).unwrap();

    let out = reconcile(&chain.summaries());
    assert_one_line_error(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("load_postgres: rows in the store: 3 of 600 id(s) not in {}.created_users", t.schema)),
        "{err}"
    );
    assert!(err.contains(&victim), "names a missing id: {err}");
    assert!(err.contains("load_cassandra: rows in the store: 1 of 600") && err.contains(&other.to_string()), "{err}");
    assert!(err.contains("load_parquet: rows in the store:"), "{err}");
    let report = summary(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(report["stores"]["load_postgres"]["missing"], 3, "{report}");
    assert_eq!(report["stores"]["load_cassandra"]["missing"], 1, "{report}");
    assert!(report["stores"]["load_parquet"]["missing"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn an_update_stream_leaves_each_ids_last_version_in_every_store_and_reconcile_proves_it() {
    require_kafka();
    let _stores = stores_shared();
    // 1,200 records over 150 users: eight versions of each, the email carrying the version, several
    // versions of an id in one batch of the load.
    let sinks = ["postgres", "cassandra", "delta"];
    let chain = Chain::ingesting(
        Target::new("it_upd"),
        "it_upd",
        1200,
        &sinks,
        "17",
        &["--update-ids", "150", "--rate", "20000/s"],
    );
    let out = reconcile(&chain.summaries());
    assert!(out.status.success(), "{}", stderr(&out));
    let report = summary(&out);
    for load in ["load_postgres", "load_cassandra", "load_delta"] {
        let figures = &report["stores"][load];
        assert_eq!((figures["records"].as_u64(), figures["found"].as_u64()), (Some(1200), Some(150)), "{report}");
    }
    // Each id's row in the stores that upsert is its eighth version.
    let rt = runtime();
    let pg = postgres(&rt);
    let t = &chain.target;
    let emails: Vec<String> = rt
        .block_on(pg.query(&format!("SELECT email FROM {}.created_users", t.schema), &[]))
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(emails.len(), 150);
    assert!(emails.iter().all(|e| e.contains("+v7@")), "{:?}", emails.iter().find(|e| !e.contains("+v7@")));
    let cql = cassandra(&rt);
    let rows = t.cassandra_rows(&rt, &cql);
    assert_eq!(rows.len(), 150);
    assert!(rows.values().all(|r| r.iter().any(|v| v.as_deref().is_some_and(|e| e.contains("+v7@")))));

    // One id's row set back to its first version (as an update reordered would leave it): reconcile names it.
    let first: (String, String) = read_all(&chain_raw(&chain), RUN)
        .iter()
        .find_map(|m| {
            let stamp = header(m, "rtds-ingested-at")?;
            Some((String::from_utf8_lossy(m.key()?).into_owned(), stamp))
        })
        .unwrap();
    let set =
        format!("UPDATE {}.created_users SET ingested_at = $1::text::timestamptz WHERE id = $2::text::uuid", t.schema);
    let changed = rt.block_on(pg.execute(&set, &[&first.1, &first.0])).unwrap();
    assert_eq!(changed, 1);
    let out = reconcile(&chain.summaries());
    assert_one_line_error(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("an older version than the run's last") && err.contains(&first.0), "{err}");
    assert_eq!(summary(&out)["stores"]["load_postgres"]["stale"], 1);
}

/// The raw topic of a chain, as its ingest's summary names it.
fn chain_raw(chain: &Chain) -> String {
    serde_json::from_str::<Value>(&chain.ingest).unwrap()["topic"].as_str().unwrap().to_owned()
}

#[test]
fn a_dead_letter_missing_from_the_count_or_a_record_left_unread_fails_reconcile() {
    require_kafka();
    let t = (unique("it_rec_dlq_raw"), unique("it_rec_dlq_c"), unique("it_rec_dlq_d"));
    let ingested = ingest(&t.0, 300, "32", &[]);
    produce(&t.0, &[(None, Some(b"{broken")), (None, Some(b"null")), (None, None)]);
    let transform = line(&run(
        rtds()
            .args(["transform", "--input-topic", &t.0, "--output-topic", &t.1, "--dlq-topic", &t.2])
            .args(["--group", &unique("g")]),
        RUN,
    ));
    let only_transform = |summaries: &[String]| {
        run(rtds().args(["reconcile", "--from", "transform", "--to", "transform"]).args(summaries), RUN)
    };
    let good = only_transform(std::slice::from_ref(&transform));
    assert!(good.status.success(), "{}", stderr(&good));
    let report = summary(&good);
    assert_eq!(report["checks"].as_array().unwrap().iter().filter(|c| c["ok"] == true).count(), 3, "{report}");
    assert_eq!((&report["scope"], &report["partial"]), (&Value::from("transform..transform"), &Value::from(true)));
    // The same summary as a whole run: no ingest, no load, and more dead letters than the budget.
    let whole = reconcile(std::slice::from_ref(&transform));
    assert_one_line_error(&whole, 1);
    let err = stderr(&whole);
    assert!(err.contains("ingest -> transform: no ingest summary"), "{err}");
    assert!(err.contains("transform -> load: no load summary"), "{err}");
    let budget =
        run(rtds().args(["reconcile", "--to", "transform", "--max-dlq-share", "0"]).args([&ingested, &transform]), RUN);
    assert_one_line_error(&budget, 1);
    let err = stderr(&budget);
    assert!(err.contains("transform: dead letters within budget: 3 of 303 record(s) (0.99%)"), "{err}");
    assert!(err.contains("over --max-dlq-share 0.00%"), "{err}");
    assert!(err.contains("x malformed JSON") && err.contains("x not a JSON object"), "the top reasons: {err}");
    let within = run(
        rtds().args(["reconcile", "--to", "transform", "--max-dlq-share", "1%"]).args([&ingested, &transform]),
        RUN,
    );
    assert!(within.status.success(), "3 of 303 is within 1%: {}", stderr(&within));

    // One dead letter taken out of the count (and the totals kept adding up).
    let mut tampered: Value = serde_json::from_str(&transform).unwrap();
    tampered["dlq"] = (tampered["dlq"].as_u64().unwrap() - 1).into();
    tampered["filtered"] = (tampered["filtered"].as_u64().unwrap() + 1).into();
    let out = only_transform(&[tampered.to_string()]);
    assert_one_line_error(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("transform: dead letters in the DLQ: counted 2 dead letter(s), 3 in"), "{err}");

    // A record ingest produced that the transform never read.
    let mut partial: Value = serde_json::from_str(&transform).unwrap();
    let consumed = partial["consumed"].as_array_mut().unwrap();
    consumed[0]["first"] = (consumed[0]["first"].as_i64().unwrap() + 1).into();
    let to_transform = |summaries: &[String]| run(rtds().args(["reconcile", "--to", "transform"]).args(summaries), RUN);
    let out = to_transform(&[ingested.clone(), partial.to_string()]);
    assert_one_line_error(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(&format!("ingest -> transform: {}: transform did not read 1 record(s)", t.0)), "{err}");

    // Both ends of every partition read, the middle lost: as when the summary
    // of one of three replicas that held a partition in turn is missing.
    let mut holed: Value = serde_json::from_str(&transform).unwrap();
    let mut spans = Vec::new();
    for span in holed["consumed"].as_array().unwrap() {
        let (first, last) = (span["first"].as_i64().unwrap(), span["last"].as_i64().unwrap());
        let third = (last - first + 1) / 3;
        for (a, b) in [(first, first + third - 1), (last - third + 1, last)] {
            let mut piece = span.clone();
            (piece["first"], piece["last"], piece["count"]) = (a.into(), b.into(), (b - a + 1).into());
            spans.push(piece);
        }
    }
    holed["consumed"] = spans.into();
    let out = to_transform(&[ingested, holed.to_string()]);
    assert_one_line_error(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(&format!("ingest -> transform: {}: transform did not read", t.0)), "{err}");
}

#[test]
fn the_last_delivery_of_a_batch_failing_commits_nothing_and_exits_1() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    require_kafka();
    let (raw, created, dlq, group) = (unique("it_fail_raw"), unique("it_fail_c"), unique("it_fail_d"), unique("g"));
    let valid = {
        let seed_topic = unique("it_fail_seed");
        ingest(&seed_topic, 1, "5", &[]);
        consume(&seed_topic, 1, RUN)[0].payload().unwrap().to_vec()
    };
    let text = String::from_utf8(valid).unwrap();
    // Random letters: the compressed record stays larger than the topic allows.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let noise: String = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect();
    let huge = text.replacen("\"first\":\"", &format!("\"first\":\"{noise}"), 1);
    let rt = runtime();
    rt.block_on(async {
        let admin: AdminClient<_> = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
        let topics = [
            NewTopic::new(&raw, 1, TopicReplication::Fixed(1)),
            NewTopic::new(&created, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "100000"),
        ];
        for r in admin.create_topics(&topics, &AdminOptions::new()).await.unwrap() {
            r.unwrap();
        }
    });
    // Ten good records, the oversized one last: its row is the batch's last delivery.
    let mut records: Vec<Record> = vec![(None, Some(text.as_bytes())); 10];
    records.push((None, Some(huge.as_bytes())));
    produce(&raw, &records);
    let out = run(
        rtds()
            .args(["transform", "--input-topic", &raw, "--output-topic", &created, "--dlq-topic", &dlq])
            .args(["--group", &group]),
        RUN,
    );
    assert_one_line_error(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("too large") && err.contains("offsets were not committed"), "{err}");
    assert_eq!(committed(&group, &raw, 1, Duration::from_secs(10)), [None], "the group committed an offset");
}

/// A clean row as JSON with its own id and one column changed.
fn variant(row: &Value, column: &str, value: &str) -> Vec<u8> {
    let mut v = row.clone();
    v["id"] = uuid::Uuid::new_v4().to_string().into();
    v[column] = value.into();
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn rows_a_store_refuses_go_to_the_dlq_and_the_rest_of_the_batch_is_written() {
    require_kafka();
    let _stores = stores_shared();
    let (source, rows) = clean_rows("it_poison", 20, "62");
    let good: Vec<Vec<u8>> = consume(&source, 20, RUN).iter().map(|m| m.payload().unwrap().to_vec()).collect();
    let row: Value = serde_json::from_slice(&good[0]).unwrap();
    let big: String = "abcdefghij".repeat(500_000);
    let nul = variant(&row, "first_name", "nul\u{0}here");
    let dob = variant(&row, "dob", "the 30th of February");
    let oversized = variant(&row, "picture", &big);
    let topic = unique("it_poison_t");
    let mut records: Vec<Record> = good.iter().map(|p| (None, Some(p.as_slice()))).collect();
    for p in [&nul, &dob, &oversized] {
        records.insert(7, (None, Some(p.as_slice())));
    }
    produce(&topic, &records);
    let target = Target::new("it_poison");
    let dlq = unique("it_poison_dlq");
    // (sink, rows refused, what its reason says)
    let expect = [
        ("postgres", 2, vec!["0x00", "dob is not an RFC 3339 timestamp"]),
        ("cassandra", 1, vec!["cassandra:"]),
        ("parquet", 0, vec![]),
    ];
    let mut dead = 0;
    for (sink, refused, reasons) in &expect {
        let group = unique("g");
        let s = ok(&run(target.load(sink, &topic, &group).args(["--dlq-topic", &dlq, "--batch-size", "1000"]), RUN));
        assert_eq!((s["in"].as_u64(), s["dlq"].as_u64()), (Some(23), Some(*refused)), "{sink}: {s}");
        dead += refused;
        let letters = consume(&dlq, dead as usize, RUN);
        let mine: Vec<String> = letters
            .iter()
            .filter(|m| header(m, "rtds-sink").as_deref() == Some(sink))
            .map(|m| {
                assert_eq!(header(m, "rtds-stage").as_deref(), Some("load"));
                header(m, "rtds-error").unwrap()
            })
            .collect();
        assert_eq!(mine.len() as u64, *refused, "{sink}: {mine:?}");
        for r in reasons {
            assert!(mine.iter().any(|m| m.contains(r)), "{sink}: no reason mentions {r:?}: {mine:?}");
        }
        // A rerun in the same group changes nothing.
        let again = ok(&run(&mut target.load(sink, &topic, &group), RUN));
        assert_eq!(again["in"].as_u64(), Some(0), "{sink}: {again}");
    }
    let rt = runtime();
    let in_pg = target.postgres_rows(&rt, &postgres(&rt));
    let in_cql = target.cassandra_rows(&rt, &cassandra(&rt));
    assert_eq!(in_pg.len(), 21, "the good rows and the oversized one");
    assert_eq!(in_cql.len(), 22, "the good rows, the NUL and the bad dob");
    for id in rows.keys() {
        assert!(in_pg.contains_key(id) && in_cql.contains_key(id), "{id} missing");
    }
}

#[test]
fn a_bounded_run_ends_beside_a_follow_service_of_the_same_stage() {
    require_kafka();
    let (raw, created, dlq, group) = (unique("it_side_raw"), unique("it_side_c"), unique("it_side_d"), unique("g"));
    ingest(&raw, 1000, "33", &[]);
    let transform = |extra: &[&str]| {
        let mut cmd = rtds();
        cmd.args(["transform", "--input-topic", &raw, "--output-topic", &created, "--dlq-topic", &dlq]).args(extra);
        cmd
    };
    let service = spawn(&mut transform(&["--follow", "--group", &group, "--max-wait", "50ms"]));
    wait_for("the service's first 1000 rows", RUN, || (topic_len(&created) >= 1000).then_some(()));
    // The DAG's way: exactly what this ingest produced, no group.
    let ingested = ingest(&raw, 500, "34", &[]);
    let bounded = run(transform(&[]).env("RTDS_FROM_SUMMARY", &ingested), Duration::from_secs(90));
    let bounded = line(&bounded);
    let s: Value = serde_json::from_str(&bounded).unwrap();
    assert_eq!(s["in"].as_u64(), Some(500), "{s}");
    let rec = run(rtds().args(["reconcile", "--to", "transform"]).args([&ingested, &bounded]), RUN);
    assert!(rec.status.success(), "{}", stderr(&rec));
    // By hand, in the service's own group: it ends too, once the group is past the end.
    let same_group = run(&mut transform(&["--group", &group]), Duration::from_secs(90));
    assert!(same_group.status.success(), "{}", stderr(&same_group));
    terminate(&service);
    let out = wait_child(service, Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: HashSet<String> = consume(&created, topic_len(&created) as usize, RUN)
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned())
        .collect();
    assert_eq!(ids.len(), 1500, "every user came out");
}

#[test]
fn shares_of_a_run_split_its_partitions_and_reconcile_together() {
    require_kafka();
    let (raw, created, dlq) = (unique("it_share_raw"), unique("it_share_c"), unique("it_share_d"));
    let ingested = ingest(&raw, 3000, "35", &[]);
    let transform = |share: &str, from: &str| {
        let mut cmd = rtds();
        cmd.args(["transform", "--input-topic", &raw, "--output-topic", &created, "--dlq-topic", &dlq]);
        cmd.args(["--share", share]).env("RTDS_FROM_SUMMARY", from);
        cmd
    };
    // Two replicas of the transform, each a share of ingest's three partitions.
    let t1 = line(&run(&mut transform("1/2", &ingested), RUN));
    let t2 = line(&run(&mut transform("2/2", &ingested), RUN));
    let partitions = |summary: &str| -> Vec<u64> {
        let s: Value = serde_json::from_str(summary).unwrap();
        s["consumed"].as_array().unwrap().iter().map(|r| r["partition"].as_u64().unwrap()).collect()
    };
    assert_eq!((partitions(&t1), partitions(&t2)), (vec![0, 2], vec![1]), "disjoint shares, every partition");
    // The loads get both transforms' summaries, one a line, and split them again.
    let target = Target::new("it_share");
    let both = format!("{t1}\n{t2}");
    let mut loads = Vec::new();
    for share in ["1/2", "2/2"] {
        let mut cmd = target.load_into("parquet", &created);
        loads.push(line(&run(cmd.args(["--share", share]).env("RTDS_FROM_SUMMARY", &both), RUN)));
    }
    let rec = reconcile(&[vec![ingested.clone(), t1.clone(), t2], loads.clone()].concat());
    assert!(rec.status.success(), "{}{}", stdout(&rec), stderr(&rec));
    assert_eq!(summary(&rec)["ok"], true);
    // Without the second transform's share, reconcile finds a partition unread.
    let rec = reconcile(&[vec![ingested.clone(), t1], loads].concat());
    assert_eq!(rec.status.code(), Some(1), "{}", stdout(&rec));
    let out = run(&mut transform("3/2", &ingested), RUN);
    assert_one_line_error(&out, 2);
}

/// The value of the metric `name` served on `addr`.
fn gauge(addr: &str, name: &str) -> Option<f64> {
    metric(&scrape(addr)?, name)
}

#[test]
fn the_lag_gauge_moves_while_the_store_is_blocked() {
    require_kafka();
    let _stores = stores_shared();
    let (source, _) = clean_rows("it_lag", 1500, "63");
    let records: Vec<(Vec<u8>, Vec<u8>)> = consume(&source, 1500, RUN)
        .iter()
        .map(|m| (m.key().unwrap().to_vec(), m.payload().unwrap().to_vec()))
        .collect();
    let send = |topic: &str, part: &[(Vec<u8>, Vec<u8>)]| {
        let recs: Vec<Record> = part.iter().map(|(k, p)| (Some(k.as_slice()), Some(p.as_slice()))).collect();
        produce(topic, &recs);
    };
    let topic = unique("it_lag_t");
    send(&topic, &records[..100]);
    let target = Target::new("it_lag");
    let addr = free_addr();
    let child = spawn(target.load("postgres", &topic, &unique("g")).args([
        "--follow",
        "--batch-size",
        "100",
        "--max-wait",
        "20ms",
        "--metrics-addr",
        &addr,
    ]));
    let rt = runtime();
    let pg = postgres(&rt);
    let count = || {
        rt.block_on(pg.query_one(&format!("SELECT count(*) FROM {}.created_users", target.schema), &[]))
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
    };
    wait_for("the first 100 rows", RUN, || (count() == 100).then_some(()));
    // Another session holds the table: every write waits.
    let (locker, conn) =
        rt.block_on(tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)).expect("connecting to PostgreSQL");
    rt.spawn(conn);
    rt.block_on(
        locker.batch_execute(&format!("BEGIN; LOCK TABLE {}.created_users IN ACCESS EXCLUSIVE MODE", target.schema)),
    )
    .unwrap();
    send(&topic, &records[100..800]);
    let lag = "rtds_consumer_lag{stage=\"load\"}";
    let first = wait_for("a lag while the store is blocked", RUN, || gauge(&addr, lag).filter(|l| *l >= 300.0));
    send(&topic, &records[800..]);
    wait_for("the lag to grow while the store is still blocked", RUN, || {
        gauge(&addr, lag).filter(|l| *l >= first + 600.0)
    });
    rt.block_on(locker.batch_execute("ROLLBACK")).unwrap();
    wait_for("every row once the store is free", RUN, || (count() == 1500).then_some(()));
    wait_for("the lag back to 0", RUN, || gauge(&addr, lag).filter(|l| *l == 0.0));
    terminate(&child);
    let s = ok(&wait_child(child, Duration::from_secs(60)));
    assert_eq!(s["out"].as_u64(), Some(1500), "{s}");
}

#[test]
fn a_range_retention_removed_is_an_error_that_says_so() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    require_kafka();
    let chain = Chain::run("it_rec_gone", 90, &["parquet"]);
    let created: Value = serde_json::from_str(&chain.transform).unwrap();
    let created = created["output_topic"].as_str().unwrap().to_owned();
    assert!(reconcile(&chain.summaries()).status.success());
    // What retention does to old segments: the rows before offset 5 of every partition go.
    runtime().block_on(async {
        let admin: AdminClient<_> = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset(&created, p, rdkafka::Offset::Offset(5)).unwrap();
        }
        admin.delete_records(&tpl, &AdminOptions::new()).await.unwrap();
    });
    let out = reconcile(&chain.summaries());
    assert_one_line_error(&out, 1);
    assert!(stderr(&out).contains("are no longer in the topic, which now starts at 5"), "{}", stderr(&out));
}

#[test]
fn a_run_whose_rows_all_fail_in_the_store_is_not_ok() {
    require_kafka();
    let _stores = stores_shared();
    let first = Chain::run("it_rec_budget", 20, &["postgres"]);
    assert!(reconcile(&first.summaries()).status.success());
    // The table changed under the pipeline: every new row breaks a constraint (class 23).
    let rt = runtime();
    let schema = first.target.schema.clone();
    rt.block_on(postgres(&rt).batch_execute(&format!(
        "ALTER TABLE {schema}.created_users ADD CONSTRAINT no_new_rows CHECK (email IS NULL) NOT VALID"
    )))
    .unwrap();
    let second = Chain::into(first.target, "it_rec_budget2", 40, &["postgres"], "34");
    let load: Value = serde_json::from_str(&second.loads[0]).unwrap();
    assert_eq!((load["in"].as_u64(), load["dlq"].as_u64()), (Some(40), Some(40)), "every row dead-lettered: {load}");
    let out = reconcile(&second.summaries());
    assert_one_line_error(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("load_postgres: dead letters within budget: 40 of 40 record(s) (100.00%)"), "{err}");
    assert!(err.contains("40 x postgres:") && err.contains("no_new_rows"), "names the reason: {err}");
}

#[test]
fn dead_letters_replayed_once_their_cause_is_fixed_reach_the_store_and_reconcile() {
    require_kafka();
    let _stores = stores_shared();
    let first = Chain::run("it_replay", 20, &["postgres"]);
    let rt = runtime();
    let schema = first.target.schema.clone();
    let sql = |statement: String| rt.block_on(postgres(&rt).batch_execute(&statement)).unwrap();
    // The table changed under the pipeline: every new row breaks a constraint, and is dead-lettered.
    sql(format!("ALTER TABLE {schema}.created_users ADD CONSTRAINT replay_later CHECK (email IS NULL) NOT VALID"));
    let second = Chain::into(first.target, "it_replay2", 30, &["postgres"], "35");
    let load: Value = serde_json::from_str(&second.loads[0]).unwrap();
    assert_eq!(load["dlq"], 30, "{load}");
    let (dlq, created) = (load["dlq_topic"].as_str().unwrap(), load["input_topic"].as_str().unwrap());
    let replay = |args: &[&str]| {
        let out = run(rtds().args(["replay", "--dlq-topic", dlq]).args(args), RUN);
        assert!(out.status.success(), "{}", stderr(&out));
        summary(&out)
    };
    let load_replayed = |replay: &Value| {
        let mut cmd = second.target.load_from("postgres", created, &replay.to_string());
        line(&run(cmd.args(["--dlq-topic", dlq]), RUN))
    };

    let dry = replay(&["--reason", "replay_later", "--dry-run"]);
    assert_eq!((dry["in"].as_u64(), dry["out"].as_u64()), (Some(30), Some(30)), "{dry}");
    let (reason, n) = dry["reasons"].as_object().unwrap().iter().next().unwrap();
    assert!(reason.contains("replay_later") && n == 30, "counted by reason: {dry}");
    assert_eq!(topic_len(created), 30, "a dry run produces nothing");

    // Replayed before the fix: dead-lettered again, counting the replay; then left in the DLQ.
    let early = replay(&["--reason", "replay_later", "--max-replays", "1"]);
    assert_eq!((early["out"].as_u64(), early["output_topic"].as_str()), (Some(30), Some(created)), "{early}");
    let failed_again: Value = serde_json::from_str(&load_replayed(&early)).unwrap();
    assert_eq!(failed_again["dlq"], 30, "{failed_again}");
    let counts: Vec<Option<String>> = read_all(dlq, RUN).iter().map(|m| header(m, "rtds-replays")).collect();
    assert_eq!(counts.iter().filter(|c| c.as_deref() == Some("1")).count(), 30, "{counts:?}");
    let spent = replay(&["--reason", "replay_later", "--max-replays", "1"]);
    assert_eq!((spent["in"].as_u64(), spent["out"].as_u64()), (Some(30), Some(0)), "{spent}");
    assert_eq!(spent["left"]["replayed --max-replays times"], 30, "{spent}");

    // Fixed: the constraint dropped. The first dead letters go through; reconcile proves the replay run.
    sql(format!("ALTER TABLE {schema}.created_users DROP CONSTRAINT replay_later"));
    let fixed = replay(&["--stage", "load", "--sink", "postgres", "--max-replays", "1"]);
    assert_eq!((fixed["in"].as_u64(), fixed["out"].as_u64()), (Some(60), Some(30)), "{fixed}");
    let loaded = load_replayed(&fixed);
    let l: Value = serde_json::from_str(&loaded).unwrap();
    assert_eq!((l["in"].as_u64(), l["out"].as_u64(), l["dlq"].as_u64()), (Some(30), Some(30), Some(0)), "{l}");
    let out = run(rtds().args(["reconcile", "--from", "transform"]).arg(fixed.to_string()).arg(&loaded), RUN);
    assert!(out.status.success(), "reconcile of the replay run: {}{}", stdout(&out), stderr(&out));
    let replayed: Vec<_> =
        read_all(created, RUN).into_iter().filter(|m| header(m, "rtds-replayed-from").is_some()).collect();
    assert_eq!(replayed.len(), 60, "two replays of 30 records");
    assert!(replayed.iter().all(|m| header(m, "rtds-replayed-from").unwrap().starts_with(&format!("{dlq}/"))));
    // Each dead letter is replayed once: the same selection again finds nothing new.
    let none = replay(&["--stage", "load", "--sink", "postgres", "--max-replays", "1"]);
    assert_eq!((none["in"].as_u64(), none["out"].as_u64()), (Some(0), Some(0)), "{none}");
}

#[test]
fn a_run_whose_writes_were_lost_fails_on_rows_an_earlier_run_left() {
    require_kafka();
    let _stores = stores_shared();
    let sinks = ["postgres", "cassandra", "parquet"];
    let earlier = Chain::run("it_rec_version", 200, &sinks);
    assert!(reconcile(&earlier.summaries()).status.success());
    // The same seed again (same users), its rows written elsewhere: as if its writes were lost.
    let later = Chain::into(Target::new("it_rec_version_b"), "it_rec_version_b", 200, &sinks, "31");
    let store_of = |load: &str| -> Value { serde_json::from_str::<Value>(load).unwrap()["store"].clone() };
    let redirected: Vec<String> = later
        .loads
        .iter()
        .zip(&earlier.loads)
        .map(|(l, e)| {
            let mut l: Value = serde_json::from_str(l).unwrap();
            l["store"] = store_of(e);
            l.to_string()
        })
        .collect();
    let summaries = [vec![later.ingest.clone(), later.transform.clone()], redirected].concat();
    let out = reconcile(&summaries);
    assert_one_line_error(&out, 1);
    let err = stderr(&out);
    for sink in sinks {
        assert!(err.contains(&format!("load_{sink}: rows in the store: 0 of 200 id(s) not in")), "{sink}: {err}");
        assert!(err.contains("200 held as another run's version"), "{sink}: {err}");
    }
    let report = summary(&out);
    assert_eq!(report["stores"]["load_postgres"]["stale"], 200, "{report}");
    // Against the stores it wrote, the later run passes.
    let ok = reconcile(&later.summaries());
    assert!(ok.status.success(), "{}", stderr(&ok));
}
