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
