//! Baseline for `rtds ingest`: a bare rdkafka producer sending the same
//! generated payloads, keys and headers with the same settings, nothing else.
//! Usage: bare_producer BROKERS TOPIC COUNT [SEED]

use std::time::{Duration, Instant};

#[path = "common/bare.rs"]
mod bare;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rtds::generate::Generator;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, topic, count) = (&args[1], &args[2], args[3].parse::<u64>()?);
    let seed = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(42);
    let producer = bare::producer(brokers)?;
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
        let record = BaseRecord::to(topic).key(&key[..]).payload(&buf[..]).headers(headers);
        bare::send(&producer, record)?;
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
