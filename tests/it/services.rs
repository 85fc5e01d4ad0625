//! One real round trip per service, and `rtds check` against all of them.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::harness::*;

#[test]
fn kafka_topic_produce_consume() {
    let brokers = require_kafka();
    let topic = unique("it_kafka");
    let rt = runtime();
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        let res = admin
            .create_topics([&NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
            .await
            .unwrap();
        assert!(res[0].is_ok(), "create topic: {res:?}");
        let producer: FutureProducer =
            ClientConfig::new().set("bootstrap.servers", &brokers).set("enable.idempotence", "true").create().unwrap();
        producer
            .send(FutureRecord::to(&topic).key("k").payload("hello"), Duration::from_secs(10))
            .await
            .expect("delivery");
    });
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("it_group"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let payload = wait_for("the message back", Duration::from_secs(30), || {
        consumer.poll(Duration::from_millis(500)).and_then(|m| m.ok()).map(|m| m.payload().unwrap().to_vec())
    });
    assert_eq!(payload, b"hello");
}

#[test]
fn cassandra_keyspace_table_roundtrip() {
    let _stores = stores_shared();
    let rt = runtime();
    let session = cassandra(&rt);
    let ks = unique("it_ks");
    rt.block_on(async {
        session
            .query_unpaged(
                format!(
                    "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
                ),
                &[],
            )
            .await
            .unwrap();
        session.query_unpaged(format!("CREATE TABLE {ks}.t (id int PRIMARY KEY, v text)"), &[]).await.unwrap();
        session.query_unpaged(format!("INSERT INTO {ks}.t (id, v) VALUES (1, 'één')"), &[]).await.unwrap();
        let rows = session
            .query_unpaged(format!("SELECT v FROM {ks}.t WHERE id = 1"), &[])
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        let (v,): (String,) = rows.single_row().unwrap();
        assert_eq!(v, "één");
        session.query_unpaged(format!("DROP KEYSPACE {ks}"), &[]).await.unwrap();
    });
}

#[test]
fn postgres_schema_table_roundtrip() {
    let _stores = stores_shared();
    let rt = runtime();
    let client = postgres(&rt);
    let schema = unique("it_pg");
    rt.block_on(async {
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int PRIMARY KEY, v text)"))
            .await
            .unwrap();
        client.execute(&format!("INSERT INTO {schema}.t VALUES (1, $1)"), &[&"één"]).await.unwrap();
        let v: String = client.query_one(&format!("SELECT v FROM {schema}.t WHERE id = 1"), &[]).await.unwrap().get(0);
        assert_eq!(v, "één");
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
    });
}

#[test]
fn check_reports_every_service_with_its_version() {
    let _stores = stores_shared();
    require_kafka();
    require_cassandra();
    require_postgres();
    require_registry();
    let out = run(rtds().arg("check"), Duration::from_secs(60));
    assert!(out.status.success(), "rtds check failed: {}\n{}", stdout(&out), stderr(&out));
    let s = summary(&out);
    assert_eq!(s["stage"], "check");
    assert_eq!(s["ok"], true);
    let services = s["services"].as_array().unwrap();
    assert_eq!(services.len(), 4);
    for svc in services {
        assert_eq!(svc["ok"], true, "{svc}");
        assert!(!svc["version"].as_str().unwrap().is_empty(), "{svc}");
    }
    let cassandra = services.iter().find(|s| s["service"] == "cassandra").unwrap();
    assert!(cassandra["version"].as_str().unwrap().starts_with(['4', '5']), "{cassandra}");
    let registry = services.iter().find(|s| s["service"] == "registry").unwrap();
    assert!(registry["version"].as_str().unwrap().contains("3.0"), "{registry}");
}

/// The schema registry: BACKWARD compatibility per subject (a new optional
/// field is a new version, a changed type is refused naming the subject), and
/// the ids rtds writes into records still resolve after the registry restarts
/// (its storage is the stack's PostgreSQL).
#[test]
fn registry_keeps_ids_across_a_restart_and_refuses_incompatible_schemas() {
    let _stores = stores_exclusive();
    let opts = rtds::registry::RegistryOpts { schema_registry_url: Some(require_registry()) };
    let subject = format!("{}-value", unique("registry"));
    let v1 = r#"{"type":"record","name":"user","fields":[{"name":"id","type":"string"}]}"#;
    let v2 = r#"{"type":"record","name":"user","fields":[{"name":"id","type":"string"},{"name":"nat","type":["null","string"],"default":null}]}"#;
    let bad = r#"{"type":"record","name":"user","fields":[{"name":"id","type":"long"}]}"#;
    let rt = runtime();
    let registry = rtds::registry::Registry::new(&opts).unwrap().unwrap();
    let (id1, id2, refused) = rt.block_on(async {
        let id1 = registry.register(&subject, v1, "BACKWARD").await.unwrap();
        assert_eq!(registry.register(&subject, v1, "BACKWARD").await.unwrap(), id1, "the same schema, the same id");
        let id2 = registry.register(&subject, v2, "BACKWARD").await.unwrap();
        (id1, id2, registry.register(&subject, bad, "BACKWARD").await.unwrap_err())
    });
    assert_ne!(id1, id2);
    assert_eq!(rtds::error::exit_code(&refused), 2, "{refused:#}");
    let message = format!("{refused:#}");
    assert!(message.contains(&subject) && message.contains("refused"), "{message}");

    stack(&["down", "registry"]);
    stack(&["up", "registry"]);
    let fresh = rtds::registry::Registry::new(&opts).unwrap().unwrap();
    rt.block_on(async {
        let schema = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(schema(&fresh.schema(id1).await.unwrap()), schema(v1));
        assert_eq!(schema(&fresh.schema(id2).await.unwrap()), schema(v2));
        let unknown = fresh.schema(u32::MAX - 7).await.unwrap_err();
        assert!(matches!(unknown.downcast_ref(), Some(rtds::registry::RegistryError::UnknownId(_))), "{unknown:#}");
    });
}
