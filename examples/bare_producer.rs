//! Baseline for `rtds ingest`: a bare rdkafka producer sending the same
//! generated payloads, keys and headers with the same settings, nothing else.
//! Usage: bare_producer BROKERS TOPIC COUNT [SEED]

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rtds::ingest::generate::Generator;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, topic, count) = (&args[1], &args[2], args[3].parse::<u64>()?);
    let seed = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(42);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "10")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("partitioner", "murmur2_random")
        .create()?;
    let generator = Generator::new(seed);
    let start = Instant::now();
    let mut buf = Vec::with_capacity(2048);
    let mut bytes = 0u64;
    for i in 0..count {
        buf.clear();
        let key = generator.write_record(i, &mut buf);
        bytes += buf.len() as u64;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let headers = OwnedHeaders::new()
            .insert(Header { key: "rtds-source", value: Some("generate") })
            .insert(Header { key: "rtds-ingested-at", value: Some(now.as_str()) });
        let mut record = BaseRecord::to(topic).key(&key[..]).payload(&buf[..]).headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => anyhow::bail!("send: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(180))?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"stage": "bare_producer", "in": count, "out": count, "bytes": bytes, "seconds": seconds,
                           "records_per_s": count as f64 / seconds})
    );
    Ok(())
}
