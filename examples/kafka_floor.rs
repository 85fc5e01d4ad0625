//! What the transform's Kafka work costs on its own, each side apart (issue
//! 19): `consume` reads a topic to its end and only counts what it read
//! (librdkafka's fetch, LZ4 decompression, its per-record ops, polling);
//! `produce` sends the records of one topic, read into memory beforehand (not
//! counted), to another with rtds's producer settings and LZ4, each with its
//! key and an ingest stamp header, as the transform produces its clean rows.
//! Each prints the wall and CPU seconds of its work (user and system, all
//! threads; `produce` from after its reading): bench/run.sh's `floor_*` steps.
//! Other librdkafka settings, to look for a cheaper configuration:
//! BARE_KAFKA_OPTIONS="key=value,key=value" (examples/common/bare.rs).
//! `stream` is the floor of a stage at a modest rate (issue 35): one thread
//! polls a consumer that follows INPUT and sends each record to OUTPUT (created
//! with INPUT's partition count) through a plain producer it polls itself (no
//! threads of its own besides librdkafka's), committing every second, until it
//! is killed; its CPU over a stretch (measured from outside, by bench/run.sh)
//! is what librdkafka alone costs at the input's rate.
//! Usage: kafka_floor consume BROKERS TOPIC GROUP
//!        kafka_floor produce BROKERS INPUT OUTPUT
//!        kafka_floor stream BROKERS INPUT OUTPUT

use std::time::{Duration, Instant};

#[path = "common/bare.rs"]
mod bare;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, brokers, a, b] = &args[..] else {
        anyhow::bail!("usage: kafka_floor consume BROKERS TOPIC GROUP | produce BROKERS INPUT OUTPUT");
    };
    let (records, bytes, wall, cpu) = match mode.as_str() {
        "consume" => consume(brokers, a, b)?,
        "produce" => produce(brokers, a, b)?,
        "stream" => stream(brokers, a, b)?,
        other => anyhow::bail!("unknown mode {other}"),
    };
    println!(
        "{}",
        serde_json::json!({"stage": format!("kafka_{mode}"), "in": records, "out": records, "bytes": bytes,
            "seconds": wall, "timed_wall_s": wall, "timed_cpu_s": cpu,
            "cpu_us_per_record": cpu * 1e6 / records.max(1) as f64,
            "options": std::env::var("BARE_KAFKA_OPTIONS").unwrap_or_default()})
    );
    Ok(())
}

fn consume(brokers: &str, topic: &str, group: &str) -> anyhow::Result<(u64, u64, f64, f64)> {
    let (start, cpu_before) = (Instant::now(), bare::cpu_seconds()?);
    let (consumer, partitions) = bare::consumer(brokers, group, topic, &rtds::transform::PROFILE)?;
    let (mut n, mut bytes) = (0u64, 0u64);
    bare::read_to_end(&consumer, partitions, |m| {
        n += 1;
        bytes += m.payload_len() as u64;
        Ok(())
    })?;
    Ok((n, bytes, start.elapsed().as_secs_f64(), bare::cpu_seconds()? - cpu_before))
}

fn produce(brokers: &str, input: &str, output: &str) -> anyhow::Result<(u64, u64, f64, f64)> {
    let group = format!("kafka-floor-{}", std::process::id());
    let (consumer, partitions) = bare::consumer(brokers, &group, input, &rtds::transform::PROFILE)?;
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    bare::read_to_end(&consumer, partitions, |m| {
        records.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec()));
        Ok(())
    })?;
    drop(consumer);
    let (start, cpu_before) = (Instant::now(), bare::cpu_seconds()?);
    let producer = bare::producer(brokers)?;
    let stamp = "2026-12-01T00:00:00.000Z";
    let mut bytes = 0u64;
    for (key, payload) in &records {
        bytes += payload.len() as u64;
        let headers = OwnedHeaders::new().insert(Header { key: "rtds-ingested-at", value: Some(stamp) });
        bare::send(&producer, BaseRecord::to(output).key(key.as_slice()).payload(payload.as_slice()).headers(headers))?;
    }
    producer.flush(Duration::from_secs(180))?;
    Ok((records.len() as u64, bytes, start.elapsed().as_secs_f64(), bare::cpu_seconds()? - cpu_before))
}

fn stream(brokers: &str, input: &str, output: &str) -> anyhow::Result<(u64, u64, f64, f64)> {
    let group = format!("kafka-floor-stream-{}", std::process::id());
    let (consumer, partitions) = bare::consumer(brokers, &group, input, &rtds::transform::PROFILE)?;
    bare::create_topic(brokers, output, partitions)?;
    let producer: BaseProducer = bare::config(brokers)?.create()?;
    let mut committed = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            None | Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => anyhow::bail!("consume: {e}"),
            Some(Ok(m)) => {
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(output);
                if let Some(k) = m.key() {
                    record = record.key(k);
                }
                if let Some(p) = m.payload() {
                    record = record.payload(p);
                }
                producer.send(record).map_err(|(e, _)| anyhow::anyhow!("send: {e}"))?;
            }
        }
        producer.poll(Duration::ZERO);
        if committed.elapsed() >= Duration::from_secs(1) {
            consumer.commit_consumer_state(CommitMode::Async)?;
            committed = Instant::now();
        }
    }
}
