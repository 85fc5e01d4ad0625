//! Avro with the real schema registry: `rtds ingest --format avro` writes the
//! raw users' schema's records in the Confluent wire format, each readable
//! back (through the registry's copy of the schema) as the user it was.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use rdkafka::message::Message;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::*;

const RUN: Duration = Duration::from_secs(120);

fn registry() -> rtds::registry::Registry {
    let opts = rtds::registry::RegistryOpts { schema_registry_url: Some(require_registry()) };
    rtds::registry::Registry::new(&opts).unwrap().unwrap()
}

/// Every leaf of a JSON value by its path, as text (a number as written): a
/// user compared field by field, whatever type the API gave a field.
fn leaves(v: &Value, at: &str, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| leaves(v, &format!("{at}.{k}"), out)),
        Value::Null => {}
        Value::String(s) => {
            out.insert(at.to_owned(), s.clone());
        }
        other => {
            out.insert(at.to_owned(), other.to_string());
        }
    }
}

/// Framed Avro payloads decoded with the registry's schemas, as JSON users.
fn decode_avro(payloads: &[&[u8]]) -> Vec<Value> {
    let registry = registry();
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    let rt = runtime();
    for p in payloads {
        let (id, _) = rtds::registry::wire::split(p).expect("a framed record");
        let schema = rt.block_on(registry.schema(id)).unwrap();
        store.set(Fingerprint::Id(id), AvroSchema::new(schema.to_string())).unwrap();
    }
    let mut decoder = arrow_avro::reader::ReaderBuilder::new().with_writer_schema_store(store).build_decoder().unwrap();
    for p in payloads {
        assert_eq!(decoder.decode(p).unwrap(), p.len(), "one whole record");
    }
    let batch = decoder.flush().unwrap().expect("rows");
    let mut w = arrow_json::ArrayWriter::new(Vec::new());
    w.write(&batch).unwrap();
    w.finish().unwrap();
    serde_json::from_slice::<Vec<Value>>(&w.into_inner()).unwrap()
}

#[test]
fn ingested_avro_users_carry_the_registered_schema_and_read_back_as_the_json_ones() {
    let _registry = stores_shared(); // not while a test restarts it
    require_kafka();
    let (json_topic, avro_topic) = (unique("it_avro_json"), unique("it_avro"));
    let mut ids = Vec::new();
    for (topic, format) in [(&json_topic, "json"), (&avro_topic, "avro")] {
        let out = run(
            rtds()
                .args(["ingest", "--source", "generate", "--count", "200", "--seed", "11", "--topic", topic])
                .args(["--format", format]),
            RUN,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let s = summary(&out);
        assert_eq!((s["out"].as_u64(), s["format"].as_str()), (Some(200), Some(format)), "{s}");
        ids.push(s["schema_id"].as_u64());
    }
    let id = ids[1].expect("the Avro run names its schema id") as u32;
    assert_eq!(ids[0], None, "JSON has no schema id");
    let registered: Value = serde_json::from_str(&runtime().block_on(registry().schema(id)).unwrap()).unwrap();
    assert_eq!(registered, serde_json::from_str::<Value>(rtds::avro::USERS_RAW).unwrap());

    let by_key = |topic: &str| -> BTreeMap<Vec<u8>, Vec<u8>> {
        consume(topic, 200, RUN).iter().map(|m| (m.key().unwrap().to_vec(), m.payload().unwrap().to_vec())).collect()
    };
    let (json, avro) = (by_key(&json_topic), by_key(&avro_topic));
    assert_eq!(json.keys().collect::<Vec<_>>(), avro.keys().collect::<Vec<_>>(), "the same users, by key");
    for payload in avro.values() {
        assert_eq!(rtds::registry::wire::split(payload).map(|(i, _)| i), Some(id), "framed with the schema's id");
    }
    let avro_bytes: usize = avro.values().map(Vec::len).sum();
    let json_bytes: usize = json.values().map(Vec::len).sum();
    assert!(avro_bytes * 10 < json_bytes * 8, "Avro {avro_bytes} bytes against JSON {json_bytes}");

    let decoded = decode_avro(&avro.values().map(Vec::as_slice).collect::<Vec<_>>());
    for ((key, json), user) in json.iter().zip(&decoded) {
        let (mut want, mut got) = (BTreeMap::new(), BTreeMap::new());
        leaves(&serde_json::from_slice(json).unwrap(), "", &mut want);
        leaves(user, "", &mut got);
        assert_eq!(got, want, "user {}", String::from_utf8_lossy(key));
    }
}

#[test]
fn a_user_the_raw_schema_cannot_hold_goes_on_as_json() {
    let _registry = stores_shared(); // not while a test restarts it
    require_kafka();
    require_registry();
    let topic = unique("it_avro_api");
    let rt = runtime();
    let server = rt.block_on(MockServer::start());
    let page = fixture("randomuser_page_no_uuid.json");
    rt.block_on(
        Mock::given(method("GET"))
            .and(path("/api/"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(page, "application/json"))
            .mount(&server),
    );
    let out = run(
        rtds()
            .args(["ingest", "--source", "randomuser", "--url", &format!("{}/api/", server.uri()), "--count", "3"])
            .args(["--topic", &topic, "--format", "avro"]),
        RUN,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["out"], 3);
    let msgs = consume(&topic, 3, RUN);
    let (framed, json): (Vec<_>, Vec<_>) =
        msgs.iter().partition(|m| rtds::registry::wire::is_framed(m.payload().unwrap()));
    assert_eq!((framed.len(), json.len()), (2, 1), "the user without login.uuid goes on as JSON");
    let v: Value = serde_json::from_slice(json[0].payload().unwrap()).unwrap();
    assert!(v["login"]["uuid"].is_null(), "{v}");
    let users = decode_avro(&framed.iter().map(|m| m.payload().unwrap()).collect::<Vec<_>>());
    // The API sends the postcode as a number; Avro holds it as its text.
    assert!(users.iter().any(|u| u["location"]["postcode"] == "69002"), "{users:?}");
}

#[test]
fn avro_without_a_registry_is_a_usage_error() {
    let out = run(
        rtds()
            .env_remove("RTDS_SCHEMA_REGISTRY_URL")
            .args(["ingest", "--source", "generate", "--count", "1", "--format", "avro", "--topic", "it_never"]),
        RUN,
    );
    assert_one_line_error(&out, 2);
    assert!(stderr(&out).contains("RTDS_SCHEMA_REGISTRY_URL"), "{}", stderr(&out));
}

/// Unique raw/output/DLQ topics and a transform over them (one partition
/// each way when `single`: the order of rows is then the order of records).
struct Flow {
    raw: String,
    out: String,
    dlq: String,
}

impl Flow {
    fn new(name: &str) -> Self {
        Self {
            raw: unique(&format!("{name}_raw")),
            out: unique(&format!("{name}_out")),
            dlq: unique(&format!("{name}_dlq")),
        }
    }

    fn ingest(&self, format: &str, seed: &str, count: &str) {
        let out = run(
            rtds()
                .args(["ingest", "--source", "generate", "--topic", &self.raw, "--partitions", "1"])
                .args(["--format", format, "--seed", seed, "--count", count]),
            RUN,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn transform(&self) -> serde_json::Value {
        let out = self.transform_with(&[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let s = summary(&out);
        assert_eq!(s["in"], s["out"].as_u64().unwrap() + s["dlq"].as_u64().unwrap(), "{s}");
        s
    }

    /// `rtds transform` with `args` added; its output, whatever its exit.
    fn transform_with(&self, args: &[&str]) -> std::process::Output {
        run(
            rtds()
                .args(["transform", "--input-topic", &self.raw, "--output-topic", &self.out, "--dlq-topic", &self.dlq])
                .args(["--group", &format!("{}_g", self.raw), "--partitions", "1"])
                .args(args),
            RUN,
        )
    }

    /// `rtds load --sink parquet` of the output into `dir`, then every row, by id, as `rtds query` reads it.
    fn loaded(&self, dir: &std::path::Path) -> BTreeMap<String, Value> {
        let out = run(
            rtds()
                .args(["load", "--sink", "parquet", "--input-topic", &self.out, "--dlq-topic", &self.dlq])
                .args(["--group", &unique("lg"), "--out"])
                .arg(dir),
            RUN,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let s = summary(&out);
        assert_eq!(s["dlq"], 0, "{s}");
        let q = run(rtds().args(["query", "--out"]).arg(dir).arg("SELECT * FROM created_users"), RUN);
        assert!(q.status.success(), "{}", stderr(&q));
        stdout(&q)
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("ingested_at");
                (v["id"].as_str().unwrap().to_owned(), v)
            })
            .collect()
    }
}

/// Rows of a topic by id, as JSON.
fn rows(topic: &str, n: usize) -> BTreeMap<String, Value> {
    consume(topic, n, RUN)
        .iter()
        .map(|m| {
            (
                String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                serde_json::from_slice(m.payload().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn avro_users_transform_to_the_rows_their_json_makes_in_input_order() {
    let _registry = stores_shared();
    require_kafka();
    require_registry();
    let (json, mixed) = (Flow::new("it_avro_tj"), Flow::new("it_avro_tm"));
    // The same users, all JSON on one side; JSON, Avro, JSON on the other, in one batch.
    json.ingest("json", "31", "40");
    json.ingest("json", "32", "40");
    json.ingest("json", "33", "40");
    mixed.ingest("json", "31", "40");
    mixed.ingest("avro", "32", "40");
    mixed.ingest("json", "33", "40");
    for flow in [&json, &mixed] {
        let s = flow.transform();
        assert_eq!((s["out"].as_u64(), s["dlq"].as_u64()), (Some(120), Some(0)), "{s}");
    }
    assert_eq!(rows(&mixed.out, 120), rows(&json.out, 120), "Avro users make the rows their JSON makes");
    let keys =
        |topic: &str| -> Vec<Vec<u8>> { consume(topic, 120, RUN).iter().map(|m| m.key().unwrap().to_vec()).collect() };
    assert_eq!(keys(&mixed.out), keys(&mixed.raw), "rows in the order of their records");
}

#[test]
fn avro_records_that_cannot_be_read_reach_the_dlq_with_the_reason() {
    let _registry = stores_shared();
    require_kafka();
    let registry = registry();
    let flow = Flow::new("it_avro_bad");
    flow.ingest("avro", "41", "3");
    let good: Vec<Vec<u8>> = consume(&flow.raw, 3, RUN).iter().map(|m| m.payload().unwrap().to_vec()).collect();
    let (id, body) = rtds::registry::wire::split(&good[0]).unwrap();
    let with_header = |id: u32, body: &[u8]| [rtds::registry::wire::header(id).as_slice(), body].concat();
    let other = r#"{"type":"record","name":"other","fields":[{"name":"x","type":"long"}]}"#;
    let other_id = runtime().block_on(registry.register(&unique("it_other-value"), other, "BACKWARD")).unwrap();
    let bad = [
        with_header(u32::MAX - 7, body),      // an id the registry does not hold
        with_header(id, &[0xff, 0xff, 0xff]), // not Avro of its schema
        with_header(id, &body[..body.len() / 2]),
        vec![0, 0, 1],               // framed, too short
        with_header(other_id, &[2]), // another topic's schema
    ];
    let records: Vec<Record> = bad.iter().map(|b| (Some(&b"bad"[..]), Some(b.as_slice()))).collect();
    produce(&flow.raw, &records);
    let s = flow.transform();
    assert_eq!((s["out"].as_u64(), s["dlq"].as_u64()), (Some(3), Some(bad.len() as u64)), "{s}");
    let dlq = consume(&flow.dlq, bad.len(), RUN);
    let payloads: Vec<Vec<u8>> = dlq.iter().map(|m| m.payload().unwrap().to_vec()).collect();
    for b in &bad {
        assert!(payloads.contains(b), "the raw bytes of a bad record are in the DLQ: {b:?}");
    }
    let reasons: Vec<String> = dlq.iter().filter_map(|m| header(m, "rtds-error")).collect();
    for expected in ["is not in the registry", "undecodable Avro", "not a framed Avro record"] {
        assert!(reasons.iter().any(|r| r.contains(expected)), "no DLQ reason mentions {expected:?}: {reasons:?}");
    }
}

#[test]
fn a_row_whose_timestamp_avro_cannot_hold_reaches_the_dlq_with_the_reason() {
    let _registry = stores_shared();
    require_kafka();
    require_registry();
    let flow = Flow::new("it_avro_ts");
    flow.ingest("json", "43", "60");
    let women = consume(&flow.raw, 60, RUN)
        .iter()
        .filter(|m| serde_json::from_slice::<Value>(m.payload().unwrap()).unwrap()["gender"] == "female")
        .count() as u64;
    assert!(women > 0 && women < 60, "the seed makes women and men: {women}");
    let sql = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dob_not_always_a_timestamp.sql");
    let out = flow.transform_with(&["--output-format", "avro", "--sql", sql.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!((s["out"].as_u64(), s["dlq"].as_u64()), (Some(60 - women), Some(women)), "{s}");
    let reasons: Vec<String> =
        consume(&flow.dlq, women as usize, RUN).iter().filter_map(|m| header(m, "rtds-error")).collect();
    assert_eq!(reasons.len() as u64, women);
    assert!(reasons.iter().all(|r| r.contains("`dob`") && r.contains("is not an RFC 3339 timestamp")), "{reasons:?}");
}

#[test]
fn a_newer_raw_schema_with_a_field_more_is_read_as_the_known_one() {
    let _registry = stores_shared();
    require_kafka();
    let (json, avro) = (Flow::new("it_avro_ej"), Flow::new("it_avro_ev"));
    json.ingest("json", "51", "5");
    avro.ingest("avro", "51", "1"); // registers users_raw under the topic's subject
    // Version 2 of the subject: a field more, optional (BACKWARD-compatible).
    let mut v2: Value = serde_json::from_str(rtds::avro::USERS_RAW).unwrap();
    v2["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "referrer", "type": ["null", "string"], "default": null}));
    let v2 = v2.to_string();
    let id2 = runtime().block_on(registry().register(&format!("{}-value", avro.raw), &v2, "BACKWARD")).unwrap();
    // The five users written with version 2, the new field set.
    let users: Vec<Vec<u8>> = consume(&json.raw, 5, RUN).iter().map(|m| m.payload().unwrap().to_vec()).collect();
    let payloads: Vec<Option<&[u8]>> = users.iter().map(|u| Some(u.as_slice())).collect();
    let decoded = rtds::raw::decode::RawDecoder::default().decode(&payloads).unwrap();
    let mut fields = decoded.batch.schema().fields().to_vec();
    fields.push(std::sync::Arc::new(arrow::datatypes::Field::new("referrer", arrow::datatypes::DataType::Utf8, true)));
    let mut columns = decoded.batch.columns().to_vec();
    columns.push(std::sync::Arc::new(arrow::array::StringArray::from(vec!["a friend"; 5])));
    let schema = arrow::datatypes::Schema::new(fields);
    let batch = arrow::array::RecordBatch::try_new(std::sync::Arc::new(schema.clone()), columns).unwrap();
    let encoded = rtds::avro::Writer::new(&schema, &v2, id2).unwrap().encode(&batch).unwrap();
    let v2_records: Vec<Vec<u8>> = encoded.iter().map(|b| b.to_vec()).collect();
    let keys: Vec<String> = decoded.ids.clone();
    let records: Vec<Record> =
        keys.iter().zip(&v2_records).map(|(k, p)| (Some(k.as_bytes()), Some(p.as_slice()))).collect();
    produce(&avro.raw, &records);

    json.transform();
    let s = avro.transform();
    assert_eq!((s["out"].as_u64(), s["dlq"].as_u64()), (Some(6), Some(0)), "{s}");
    let (want, got) = (rows(&json.out, 5), rows(&avro.out, 6));
    for (id, row) in &want {
        assert_eq!(got.get(id), Some(row), "user {id} written with version 2");
    }
}

#[test]
fn avro_rows_load_as_their_json_rows_and_a_newer_sql_keeps_the_loads_going() {
    let _registry = stores_shared();
    require_kafka();
    require_registry();
    let (json, avro) = (Flow::new("it_avro_lj"), Flow::new("it_avro_la"));
    json.ingest("json", "61", "50");
    avro.ingest("avro", "61", "50");
    let out = json.transform_with(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = avro.transform_with(&["--output-format", "avro"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Vec<u8>> = consume(&avro.out, 50, RUN).iter().map(|m| m.payload().unwrap().to_vec()).collect();
    let (id, _) = rtds::registry::wire::split(&rows[0]).expect("Avro rows are framed");
    assert!(rows.iter().all(|r| rtds::registry::wire::split(r).map(|(i, _)| i) == Some(id)));
    assert!(rows.iter().map(Vec::len).sum::<usize>() > 0);

    // A newer SQL: a column more, optional. A new version of the subject; the loads read it.
    let sql = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/format_users.sql")).unwrap();
    let wider = sql.replace("FROM users_raw", ", CASE WHEN gender = 'female' THEN 'f' END AS referrer\nFROM users_raw");
    let dir = tempfile::tempdir().unwrap();
    let wider_sql = dir.path().join("wider.sql");
    std::fs::write(&wider_sql, wider).unwrap();
    avro.ingest("avro", "62", "10");
    let out = avro.transform_with(&["--output-format", "avro", "--sql", wider_sql.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let newer: Vec<u32> = consume(&avro.out, 60, RUN)
        .iter()
        .filter_map(|m| rtds::registry::wire::split(m.payload().unwrap()).map(|(i, _)| i))
        .collect();
    assert!(newer[50..].iter().all(|i| *i != id), "the wider rows carry a new schema id: {newer:?}");

    let (want, got) = (json.loaded(&dir.path().join("json")), avro.loaded(&dir.path().join("avro")));
    assert_eq!(got.len(), 60, "every row, both versions");
    for (row_id, row) in &want {
        assert_eq!(got.get(row_id), Some(row), "row {row_id}");
    }

    // An incompatible change (post_code becomes a number) is refused at start, naming the subject.
    let narrower = sql.replace("location['postcode']                AS post_code", "CAST(1 AS BIGINT) AS post_code");
    assert_ne!(narrower, sql);
    let bad_sql = dir.path().join("bad.sql");
    std::fs::write(&bad_sql, narrower).unwrap();
    let out = avro.transform_with(&["--output-format", "avro", "--sql", bad_sql.to_str().unwrap()]);
    assert_one_line_error(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("{}-value", avro.out)) && err.contains("ncompatible"), "{err}");
}
