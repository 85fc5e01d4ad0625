//! `rtds load` against real Cassandra, PostgreSQL and Parquet files: every
//! column round-trips, re-runs are idempotent, kill -9 and store outages (run
//! by `make faults`, tests/it/faults.rs) lose
//! nothing and duplicate nothing, bad tables and names are refused.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::message::Message;
use rtds::row::{COLUMNS, INGESTED_AT, Kind, names};
use serde_json::Value;

use crate::harness::*;

const RUN: Duration = Duration::from_secs(180);

pub(crate) type Rows = BTreeMap<String, Vec<Option<String>>>;

/// `n` clean rows in a fresh users_created topic, made by the real ingest and transform.
pub(crate) fn clean_rows(name: &str, n: usize, seed: &str) -> (String, Rows) {
    let raw = unique(&format!("{name}_raw"));
    let created = unique(&format!("{name}_created"));
    let out = run(
        rtds().args(["ingest", "--source", "generate", "--count", &n.to_string(), "--seed", seed, "--topic", &raw]),
        RUN,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        rtds().args(["transform", "--input-topic", &raw, "--output-topic", &created, "--group", &format!("{raw}_g")]),
        RUN,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = consume(&created, n, RUN)
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let cells: Vec<Option<String>> = names().map(|c| v[c].as_str().map(str::to_owned)).collect();
            (cells[0].clone().unwrap(), cells)
        })
        .collect();
    (created, rows)
}

/// One store per test: its own keyspace / schema / directory.
pub(crate) struct Target {
    pub(crate) keyspace: String,
    pub(crate) schema: String,
    pub(crate) out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Target {
    pub(crate) fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self { keyspace: unique(name), schema: unique(name), out: dir.path().to_owned(), _dir: dir }
    }

    pub(crate) fn load(&self, sink: &str, topic: &str, group: &str) -> std::process::Command {
        let mut cmd = self.load_into(sink, topic);
        cmd.args(["--group", group]);
        cmd
    }

    /// A load of what an upstream run produced to `topic` (its summary line), without a group.
    pub(crate) fn load_from(&self, sink: &str, topic: &str, upstream: &str) -> std::process::Command {
        let mut cmd = self.load_into(sink, topic);
        cmd.env("RTDS_FROM_SUMMARY", upstream);
        cmd
    }

    pub(crate) fn load_into(&self, sink: &str, topic: &str) -> std::process::Command {
        let mut cmd = rtds();
        cmd.args(["load", "--sink", sink, "--input-topic", topic, "--keyspace", &self.keyspace])
            .args(["--pg-schema", &self.schema, "--out"])
            .arg(&self.out);
        cmd
    }

    /// The table's rows; none while it does not exist yet.
    pub(crate) fn cassandra_rows(
        &self,
        rt: &tokio::runtime::Runtime,
        session: &scylla::client::session::Session,
    ) -> Rows {
        rt.block_on(async {
            let columns: Vec<&str> = names().collect();
            let sql = format!("SELECT {} FROM {}.created_users", columns.join(", "), self.keyspace);
            let Ok(res) = session.query_unpaged(sql, &[]).await else { return Rows::new() };
            let res = res.into_rows_result().unwrap();
            res.rows::<scylla::value::Row>()
                .unwrap()
                .map(|r| {
                    let cells: Vec<Option<String>> = r
                        .unwrap()
                        .columns
                        .into_iter()
                        .map(|v| match v {
                            None => None,
                            Some(scylla::value::CqlValue::Uuid(u)) => Some(u.to_string()),
                            Some(scylla::value::CqlValue::Text(t)) => Some(t),
                            Some(other) => panic!("a column of an unexpected type: {other:?}"),
                        })
                        .collect();
                    (cells[0].clone().unwrap(), cells)
                })
                .collect()
        })
    }

    /// Rows as text, timestamps rendered back in the API's format to compare;
    /// none while the table does not exist yet.
    pub(crate) fn postgres_rows(&self, rt: &tokio::runtime::Runtime, client: &tokio_postgres::Client) -> Rows {
        let select: Vec<String> = COLUMNS
            .iter()
            .map(|c| match c.kind {
                Kind::Id => format!("{}::text", c.name),
                Kind::Timestamp => {
                    format!("to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')", c.name)
                }
                Kind::Text => c.name.to_owned(),
            })
            .collect();
        let sql = format!("SELECT {} FROM {}.created_users", select.join(", "), self.schema);
        rt.block_on(client.query(&sql, &[]))
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let cells: Vec<Option<String>> = (0..COLUMNS.len()).map(|i| r.get(i)).collect();
                (cells[0].clone().unwrap(), cells)
            })
            .collect()
    }

    fn parquet_rows(&self) -> (usize, Rows) {
        use arrow::array::{Array, StringArray};
        let dir = self.out.join("created_users");
        let mut rows = Rows::new();
        let mut total = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("part-") && name.ends_with(".parquet"), "stray file {name}");
            let file = std::fs::File::open(&path).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                total += batch.num_rows();
                let cols: Vec<&StringArray> = names()
                    .map(|c| batch.column_by_name(c).unwrap().as_any().downcast_ref::<StringArray>().unwrap())
                    .collect();
                for i in 0..batch.num_rows() {
                    let cells: Vec<Option<String>> =
                        cols.iter().map(|c| c.is_valid(i).then(|| c.value(i).to_owned())).collect();
                    rows.insert(cells[0].clone().unwrap(), cells);
                }
            }
        }
        (total, rows)
    }
}

pub(crate) fn ok(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "load failed: {}", stderr(out));
    let s = summary(out);
    assert_eq!(s["stage"], "load");
    assert_eq!(s["in"].as_u64().unwrap(), s["out"].as_u64().unwrap() + s["dlq"].as_u64().unwrap(), "{s}");
    s
}

#[test]
fn every_sink_gets_every_column_and_reruns_are_idempotent() {
    require_kafka();
    let _stores = stores_shared();
    let (topic, want) = clean_rows("it_load_rt", 500, "51");
    let target = Target::new("it_load_rt");
    let rt = runtime();
    let session = cassandra(&rt);
    let client = postgres(&rt);
    for sink in ["cassandra", "postgres", "parquet"] {
        let s = ok(&run(&mut target.load(sink, &topic, &unique("g")), RUN));
        assert_eq!((s["out"].as_u64(), s["sink"].as_str()), (Some(500), Some(sink)), "{s}");
        // Every row came through the real ingest, stamped: its end-to-end latency is counted.
        let lat = &s["latency_ms"];
        assert_eq!(lat["rows"].as_u64(), Some(500), "{s}");
        assert!(lat["p50"].as_u64() <= lat["p99"].as_u64() && lat["p99"].as_u64() <= lat["max"].as_u64(), "{s}");
        // ... and split into its hops, each no longer than the whole way.
        let max = lat["max"].as_u64().unwrap();
        for hop in ["ingest_to_transform", "transform_to_load", "load_to_store"] {
            let (p50, p99) = (lat["hops"][hop]["p50"].as_u64(), lat["hops"][hop]["p99"].as_u64());
            assert!(matches!((p50, p99), (Some(a), Some(b)) if a <= b && b <= max + 1), "{hop}: {s}");
        }
    }
    assert_eq!(target.cassandra_rows(&rt, &session), want, "Cassandra rows differ from the input");
    assert_eq!(target.postgres_rows(&rt, &client), want, "PostgreSQL rows differ from the input");
    assert_eq!(target.parquet_rows(), (500, want.clone()), "Parquet rows differ from the input");
    every_store_holds_the_contract_columns(&target, &rt, &session, &client);

    // The same input again, through a new group: upserts, still 500 rows. In
    // PostgreSQL the plain COPY meets the existing ids, and the rows staled
    // meanwhile are updated back to the input.
    let stale = format!("UPDATE {}.created_users SET first_name = 'stale'", target.schema);
    rt.block_on(client.execute(&stale, &[])).unwrap();
    for sink in ["cassandra", "postgres"] {
        ok(&run(&mut target.load(sink, &topic, &unique("g2")), RUN));
    }
    assert_eq!(target.cassandra_rows(&rt, &session).len(), 500);
    assert_eq!(target.postgres_rows(&rt, &client), want, "PostgreSQL rows are upserted back to the input");
}

/// Each store's table has exactly the row contract's columns and the ingest
/// stamp (PostgreSQL also `loaded_at`), of the type the contract says that
/// store holds them as.
fn every_store_holds_the_contract_columns(
    target: &Target,
    rt: &tokio::runtime::Runtime,
    session: &scylla::client::session::Session,
    client: &tokio_postgres::Client,
) {
    use std::collections::BTreeMap;
    let contract = |ty: fn(Kind) -> &'static str| -> BTreeMap<String, String> {
        COLUMNS.iter().map(|c| (c.name.to_owned(), ty(c.kind).to_owned())).collect()
    };
    let cql: BTreeMap<String, String> = rt.block_on(async {
        let res = session
            .query_unpaged(
                "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = 'created_users'",
                (&target.keyspace,),
            )
            .await
            .unwrap();
        res.into_rows_result().unwrap().rows::<(String, String)>().unwrap().map(Result::unwrap).collect()
    });
    let mut want = contract(Kind::cql);
    want.insert(INGESTED_AT.into(), "text".into());
    assert_eq!(cql, want, "Cassandra's columns");
    let pg: BTreeMap<String, String> = rt
        .block_on(client.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'created_users'",
            &[&target.schema],
        ))
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut want = contract(Kind::postgres);
    want.insert("loaded_at".into(), "timestamp with time zone".into());
    want.insert(INGESTED_AT.into(), "timestamp with time zone".into());
    assert_eq!(pg, want, "PostgreSQL's columns");
    let dir = target.out.join("created_users");
    let file = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
            .unwrap();
    let fields: Vec<(String, String, bool)> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string(), f.is_nullable()))
        .collect();
    let want: Vec<(String, String, bool)> = COLUMNS
        .iter()
        .map(|c| (c.name.to_owned(), "Utf8".to_owned(), c.kind != Kind::Id))
        .chain([(INGESTED_AT.to_owned(), "Utf8".to_owned(), true)])
        .collect();
    assert_eq!(fields, want, "Parquet's columns, in order");
}

fn count_postgres(rt: &tokio::runtime::Runtime, client: &tokio_postgres::Client, schema: &str) -> i64 {
    rt.block_on(client.query_one(&format!("SELECT count(*) FROM {schema}.created_users"), &[]))
        .map(|r| r.get(0))
        .unwrap_or(0)
}

#[test]
fn kill_9_mid_load_then_rerun_gives_each_id_once() {
    require_kafka();
    let _stores = stores_shared();
    let (topic, want) = clean_rows("it_load_kill", 30_000, "61");
    let target = Target::new("it_load_kill");
    let rt = runtime();
    let client = postgres(&rt);
    let session = cassandra(&rt);
    for sink in ["postgres", "cassandra"] {
        let group = unique("g");
        let mut child = spawn(target.load(sink, &topic, &group).args(["--batch-size", "1000"]));
        wait_for("some rows written before the kill", RUN, || {
            let n = match sink {
                "postgres" => count_postgres(&rt, &client, &target.schema) as usize,
                _ => target.cassandra_rows(&rt, &session).len(),
            };
            (n >= 2000 || child.try_wait().unwrap().is_some()).then_some(())
        });
        child.kill().unwrap();
        child.wait().unwrap();
        ok(&run(&mut target.load(sink, &topic, &group), RUN));
    }
    assert_eq!(target.postgres_rows(&rt, &client), want, "PostgreSQL: every id exactly once");
    assert_eq!(target.cassandra_rows(&rt, &session), want, "Cassandra: every id exactly once");
}

pub(crate) type Owned = (Option<Vec<u8>>, Option<Vec<u8>>);

pub(crate) fn as_refs(part: &[Owned]) -> Vec<Record<'_>> {
    part.iter().map(|(k, p)| (k.as_deref(), p.as_deref())).collect()
}

/// A `--follow` load keeps going through an outage of its store. Returns the
/// rows sent, the ids found in the store, and how long after the store came
/// back every row was there.
pub(crate) fn survives_outage(sink: &str, service: &str, down_for: Duration) -> Outage {
    require_kafka();
    let _stores = stores_exclusive();
    let (source, want) = clean_rows(&format!("it_out_{sink}"), 3000, "71");
    let msgs = consume(&source, 3000, RUN);
    let records: Vec<Owned> =
        msgs.iter().map(|m| (m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec))).collect();
    let (first, rest) = records.split_at(1000);
    let topic = unique(&format!("it_out_{sink}_t"));
    produce(&topic, &as_refs(first));
    let target = Target::new(&format!("it_out_{sink}"));
    let group = unique("g");
    let child =
        spawn(target.load(sink, &topic, &group).args(["--follow", "--batch-size", "100", "--max-wait", "50ms"]));
    let rt = runtime();
    let complete = || match sink {
        "postgres" => target.postgres_rows(&rt, &postgres(&rt)),
        _ => target.cassandra_rows(&rt, &cassandra(&rt)),
    };
    wait_for("the first rows before the outage", RUN, || (!complete().is_empty()).then_some(()));
    // The store goes away; the rest of the rows arrive while it is down.
    stack(&["down", service]);
    produce(&topic, &as_refs(rest));
    std::thread::sleep(down_for);
    stack(&["up", service]);
    let back = std::time::Instant::now();
    // Wait for every row, but count what is there if they do not all come.
    let mut recovery = None;
    while back.elapsed() < RUN {
        if complete().len() >= want.len() {
            recovery = Some(back.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    terminate(&child);
    let summary = summary(&wait_child(child, Duration::from_secs(60)));
    let found = complete();
    let found_ids = want.keys().filter(|id| found.contains_key(*id)).count();
    Outage { rows: want.len(), found: found_ids, recovery, summary, as_sent: found == want }
}

/// What a store outage under `load --follow` left, counted before it is checked.
pub(crate) struct Outage {
    pub(crate) rows: usize,
    /// Of the rows' ids, how many the store holds.
    pub(crate) found: usize,
    /// From the store's return to its last row, if every row came.
    pub(crate) recovery: Option<Duration>,
    summary: Value,
    /// Every row in the store as it was sent, nothing else.
    as_sent: bool,
}

impl Outage {
    pub(crate) fn lost(&self) -> usize {
        self.rows - self.found
    }

    pub(crate) fn check(&self) {
        assert_eq!(self.lost(), 0, "rows missing from the store after the outage");
        assert!(self.as_sent, "the store holds every row as it was sent, and nothing else");
        assert_eq!(self.summary["out"].as_u64(), Some(self.rows as u64), "{}", self.summary);
        assert_eq!(self.summary["dlq"].as_u64(), Some(0), "{}", self.summary);
    }
}

#[test]
fn a_table_with_wrong_columns_is_named_and_refused() {
    require_kafka();
    let _stores = stores_shared();
    let target = Target::new("it_load_cols");
    let rt = runtime();
    let session = cassandra(&rt);
    let client = postgres(&rt);
    rt.block_on(async {
        let ks = &target.keyspace;
        session
            .query_unpaged(format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"), &[])
            .await
            .unwrap();
        session.query_unpaged(format!("CREATE TABLE {ks}.created_users (id uuid PRIMARY KEY, first_name text)"), &[]).await.unwrap();
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {s}; CREATE TABLE {s}.created_users (id uuid PRIMARY KEY, first_name text, last_name text, gender int)",
                s = target.schema
            ))
            .await
            .unwrap();
    });
    let topic = unique("it_load_cols_t");
    for (sink, says) in [("cassandra", "no column `last_name`"), ("postgres", "column `gender`")] {
        let out = run(&mut target.load(sink, &topic, "g"), RUN);
        assert_one_line_error(&out, 1);
        assert!(stderr(&out).contains(says), "{sink}: {}", stderr(&out));
    }
}

#[test]
fn bad_names_are_usage_errors() {
    for args in [
        &["--sink", "cassandra", "--keyspace", "x; DROP"][..],
        &["--sink", "cassandra", "--keyspace", "MyKs"],
        &["--sink", "postgres", "--pg-schema", "user"],
        &["--sink", "postgres", "--table", "order"],
        &["--sink", "postgres", "--table", "t\"; DROP TABLE x; --"],
        &["--sink", "parquet", "--input-topic", "bad topic"],
        &["--sink", "cassandra", "--replication", "SimpleStrategy:1}; DROP"],
        &["--sink", "nope"],
    ] {
        let out = run(rtds().arg("load").args(args), Duration::from_secs(60));
        assert_one_line_error(&out, 2);
    }
}

#[test]
fn an_unwritable_parquet_directory_fails_clearly() {
    let out =
        run(rtds().args(["load", "--sink", "parquet", "--out", "/proc/rtds-cannot-write"]), Duration::from_secs(60));
    assert_one_line_error(&out, 1);
    assert!(stderr(&out).contains("/proc/rtds-cannot-write"), "{}", stderr(&out));
}

/// Load replicas starting at once into a new schema each create it if absent:
/// none fails on the other's CREATE (PostgreSQL's IF NOT EXISTS alone races).
#[test]
fn postgres_load_replicas_starting_at_once_all_create_the_table() {
    let _stores = stores_shared();
    let (created, _) = clean_rows("it_pg_race", 10, "17");
    // The race is a matter of milliseconds: three rounds (without the lock, 4 runs in 6 of one round failed).
    for _ in 0..3 {
        let target = Target::new("it_pg_race");
        let replicas: Vec<_> = (0..6).map(|_| spawn(&mut target.load("postgres", &created, &unique("g")))).collect();
        for r in replicas {
            assert_eq!(ok(&wait_child(r, RUN))["out"], 10);
        }
    }
}

#[test]
fn one_uuid_in_two_spellings_is_one_row_in_every_store() {
    require_kafka();
    let _stores = stores_shared();
    let (raw, created) = (unique("it_spelling_raw"), unique("it_spelling_c"));
    let fixture = String::from_utf8(fixture("contract/users_raw.jsonl")).unwrap();
    let user: Value = serde_json::from_str(fixture.lines().next().unwrap()).unwrap();
    let id = user["login"]["uuid"].as_str().unwrap().to_lowercase();
    let spelled = |uuid: String| {
        let mut u = user.clone();
        u["login"]["uuid"] = uuid.into();
        u.to_string()
    };
    let (lower, upper) = (spelled(id.clone()), spelled(id.to_uppercase()));
    // One partition: both versions in one batch, the upper-case one last.
    produce(&raw, &[(Some(b"k"), Some(lower.as_bytes())), (Some(b"k"), Some(upper.as_bytes()))]);
    let out = run(
        rtds().args(["transform", "--input-topic", &raw, "--output-topic", &created, "--group", &unique("g")]),
        RUN,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = consume(&created, 2, RUN);
    for m in &rows {
        assert_eq!(m.key(), Some(id.as_bytes()), "the key in its one spelling");
        let row: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(row["id"], id.as_str(), "the row's id in its one spelling");
    }
    // A row keyed by another producer in upper case, in the same batch as the lower-case one.
    let upper_row = String::from_utf8(rows[0].payload().unwrap().to_vec()).unwrap().replace(&id, &id.to_uppercase());
    produce(&created, &[(Some(id.to_uppercase().as_bytes()), Some(upper_row.as_bytes()))]);
    let target = Target::new("it_spelling");
    let rt = runtime();
    for sink in ["postgres", "cassandra", "parquet"] {
        let s = ok(&run(&mut target.load(sink, &created, &unique("g")), RUN));
        assert_eq!((s["in"].as_u64(), s["dlq"].as_u64()), (Some(3), Some(0)), "{sink}: {s}");
    }
    let pg = target.postgres_rows(&rt, &postgres(&rt));
    let cql = target.cassandra_rows(&rt, &cassandra(&rt));
    let (files, parquet) = target.parquet_rows();
    assert_eq!(pg.keys().collect::<Vec<_>>(), [&id], "PostgreSQL");
    assert_eq!(cql.keys().collect::<Vec<_>>(), [&id], "Cassandra");
    assert_eq!((files, parquet.keys().collect::<Vec<_>>()), (1, vec![&id]), "Parquet: one row, one spelling");
}

#[test]
fn a_table_of_the_earlier_version_gets_the_ingest_stamp_column() {
    require_kafka();
    let _stores = stores_shared();
    let (topic, _) = clean_rows("it_load_stamp", 5, "81");
    let target = Target::new("it_load_stamp");
    let rt = runtime();
    let (session, client) = (cassandra(&rt), postgres(&rt));
    // The tables as the earlier version made them: the contract's columns only.
    let ddl = |ty: fn(Kind) -> &'static str| {
        COLUMNS
            .iter()
            .map(|c| format!("{} {}{}", c.name, ty(c.kind), if c.kind == Kind::Id { " PRIMARY KEY" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ")
    };
    rt.block_on(async {
        let ks = &target.keyspace;
        let create_ks = format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}");
        session.query_unpaged(create_ks, &[]).await.unwrap();
        session.query_unpaged(format!("CREATE TABLE {ks}.created_users ({})", ddl(Kind::cql)), &[]).await.unwrap();
        let schema = &target.schema;
        let pg = format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.created_users ({}, loaded_at timestamptz NOT NULL DEFAULT now())",
            ddl(Kind::postgres)
        );
        client.batch_execute(&pg).await.unwrap();
    });
    for sink in ["cassandra", "postgres"] {
        ok(&run(&mut target.load(sink, &topic, &unique("g")), RUN));
    }
    let stamps: i64 = rt.block_on(async {
        let sql = format!("SELECT count(*) FROM {}.created_users WHERE {INGESTED_AT} IS NOT NULL", target.schema);
        client.query_one(&sql, &[]).await.unwrap().get(0)
    });
    assert_eq!(stamps, 5, "every row written with its ingest stamp");
    let cql_stamps = rt.block_on(async {
        let sql = format!("SELECT {INGESTED_AT} FROM {}.created_users", target.keyspace);
        let rows = session.query_unpaged(sql, &[]).await.unwrap().into_rows_result().unwrap();
        rows.rows::<(Option<String>,)>().unwrap().filter(|r| r.as_ref().unwrap().0.is_some()).count()
    });
    assert_eq!(cql_stamps, 5, "every row written with its ingest stamp");
}
