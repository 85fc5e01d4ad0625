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
//! is what librdkafka alone costs at the input's rate. `stream-eos` is the same
//! loop exactly once, as `transform --follow --exactly-once` commits: a
//! transaction a batch (gathered as the stage gathers one: up to 3 ms after its
//! first record while it lacks a partition), its input offsets in it.
//! Usage: kafka_floor consume BROKERS TOPIC GROUP
//!        kafka_floor produce BROKERS INPUT OUTPUT
//!        kafka_floor stream BROKERS INPUT OUTPUT
//!        kafka_floor stream-eos BROKERS INPUT OUTPUT

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;

#[path = "common/bare.rs"]
mod bare;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rtds::kafka::GATHER;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, brokers, a, b] = &args[..] else {
        anyhow::bail!(
            "usage: kafka_floor consume BROKERS TOPIC GROUP | produce|stream|stream-eos BROKERS INPUT OUTPUT"
        );
    };
    let (records, bytes, wall, cpu) = match mode.as_str() {
        "consume" => consume(brokers, a, b)?,
        "produce" => produce(brokers, a, b)?,
        "stream" => stream(brokers, a, b, false)?,
        "stream-eos" => stream(brokers, a, b, true)?,
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

fn stream(brokers: &str, input: &str, output: &str, exactly_once: bool) -> anyhow::Result<(u64, u64, f64, f64)> {
    let group = format!("kafka-floor-stream-{}", std::process::id());
    let (consumer, partitions) = bare::consumer(brokers, &group, input, &rtds::transform::PROFILE)?;
    bare::create_topic(brokers, output, partitions)?;
    let mut cfg = bare::config(brokers)?;
    if exactly_once {
        // rtds's transactional settings, at the stage's default --transaction-timeout.
        let timeout = rtds::validate::parse_duration(rtds::stage::TRANSACTION_TIMEOUT).map_err(anyhow::Error::msg)?;
        let txn = rtds::kafka::Transactional { id: &group, timeout };
        for (key, value) in txn.settings() {
            cfg.set(key, value);
        }
    }
    let producer: BaseProducer = cfg.create()?;
    let timeout = Duration::from_secs(30);
    if exactly_once {
        producer.init_transactions(timeout)?;
    }
    let mut committed = Instant::now();
    // The open transaction: when its first record came, and the partitions it read.
    let mut open: Option<(Instant, HashSet<i32>)> = None;
    loop {
        // As the stage gathers a batch: up to `GATHER` after its first record while it lacks a partition.
        let wait = match &open {
            None => Duration::from_millis(100),
            Some((_, read)) if read.len() >= partitions => Duration::ZERO,
            // Whole milliseconds: rdkafka's poll spins out the part of a timeout under one.
            Some((first, _)) => {
                Duration::from_millis(GATHER.saturating_sub(first.elapsed()).as_micros().div_ceil(1000) as u64)
            }
        };
        match consumer.poll(wait) {
            None | Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                if open.as_ref().is_some_and(|(first, read)| read.len() >= partitions || first.elapsed() >= GATHER) {
                    let group = consumer.group_metadata().context("the consumer's group metadata")?;
                    producer.send_offsets_to_transaction(&consumer.position()?, &group, timeout)?;
                    // The reports first, looked for every 1 ms (rtds's flush): rdkafka's flush, in
                    // the commit, polls for 100 ms once anything is in flight, and its `poll` spins
                    // out the part of a timeout under a millisecond.
                    while producer.in_flight_count() > 0 {
                        producer.poll(Duration::ZERO);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    producer.commit_transaction(timeout)?;
                    open = None;
                }
            }
            Some(Err(e)) => anyhow::bail!("consume: {e}"),
            Some(Ok(m)) => {
                if exactly_once && open.is_none() {
                    producer.begin_transaction()?;
                    open = Some((Instant::now(), HashSet::new()));
                }
                if let Some((_, read)) = &mut open {
                    read.insert(m.partition());
                }
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
        if !exactly_once && committed.elapsed() >= Duration::from_secs(1) {
            consumer.commit_consumer_state(CommitMode::Async)?;
            committed = Instant::now();
        }
    }
}
