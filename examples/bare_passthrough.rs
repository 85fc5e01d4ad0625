//! Baseline for `rtds transform`: bare rdkafka consume-and-produce until the end
//! of the input, then commit. For each input record it produces the bytes rtds
//! produced for it: the clean row of its key, read beforehand (not timed) from
//! ROWS, a topic rtds's transform wrote (without ROWS: the input unchanged). So
//! it does rtds's Kafka work, byte for byte, and none of the transforming.
//! Reading ROWS is preparation: the run's own wall and CPU seconds
//! (`timed_wall_s`, `timed_cpu_s`) start after it, before the clients start.
//! Usage: bare_passthrough BROKERS INPUT OUTPUT GROUP [ROWS]

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[path = "common/bare.rs"]
mod bare;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, input, output, group) = (&args[1], &args[2], &args[3], &args[4]);
    let rows = match args.get(5) {
        Some(topic) => read_rows(brokers, topic)?,
        None => HashMap::new(),
    };
    let (start, cpu_before) = (Instant::now(), bare::cpu_seconds()?);
    let (consumer, partitions) = bare::consumer(brokers, group, input)?;
    let producer = bare::producer(brokers)?;
    let mut n = 0u64;
    bare::read_to_end(&consumer, partitions, |m| {
        n += 1;
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(output);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        let clean = m.key().and_then(|k| rows.get(k));
        if !rows.is_empty() && clean.is_none() {
            anyhow::bail!("input record at offset {} has no clean row in {}", m.offset(), args[5]);
        }
        if let Some(p) = clean.map(Vec::as_slice).or(m.payload()) {
            record = record.payload(p);
        }
        if let Some(h) = m.headers() {
            record = record.headers(h.detach());
        }
        bare::send(&producer, record)
    })?;
    producer.flush(Duration::from_secs(180))?;
    consumer.commit_consumer_state(CommitMode::Sync)?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = bare::cpu_seconds()? - cpu_before;
    println!(
        "{}",
        serde_json::json!({"stage": "bare_passthrough", "in": n, "out": n, "seconds": seconds,
            "records_per_s": n as f64 / seconds, "timed_wall_s": seconds, "timed_cpu_s": cpu})
    );
    Ok(())
}

/// Every record of `topic` (to its end), payload by key.
fn read_rows(brokers: &str, topic: &str) -> anyhow::Result<HashMap<Vec<u8>, Vec<u8>>> {
    let (consumer, partitions) = bare::consumer(brokers, &format!("bare-rows-{}", std::process::id()), topic)?;
    let mut rows = HashMap::new();
    bare::read_to_end(&consumer, partitions, |m| {
        rows.insert(m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec());
        Ok(())
    })?;
    Ok(rows)
}
