//! Baseline for `rtds transform`: bare rdkafka consume-and-produce until the end
//! of the input, then commit. For each input record it produces the bytes rtds
//! produced for it: the clean row of its key, read beforehand (not timed) from
//! ROWS, a topic rtds's transform wrote (without ROWS: the input unchanged). So
//! it does rtds's Kafka work, byte for byte, and none of the transforming.
//! As rtds does, it reads with the transform's prefetch settings and works on
//! two cores: one thread polls the consumer, another produces, overlapped
//! (batches of records handed over a bounded channel, as rtds hands batches on).
//! Reading ROWS is preparation: the run's own wall and CPU seconds
//! (`timed_wall_s`, `timed_cpu_s`) start after it, before the clients start.
//! Usage: bare_passthrough BROKERS INPUT OUTPUT GROUP [ROWS]

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "common/bare.rs"]
mod bare;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

/// Records handed from the polling thread to the producing one at a time.
const HAND_OVER: usize = 1000;

/// What the producing thread needs of a consumed record: its key, its
/// payload unless a clean row replaces it, its headers.
struct Consumed {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, input, output, group) = (&args[1], &args[2], &args[3], &args[4]);
    let rows = match args.get(5) {
        Some(topic) => read_rows(brokers, topic)?,
        None => HashMap::new(),
    };
    let (start, cpu_before) = (Instant::now(), bare::cpu_seconds()?);
    let (consumer, partitions) = bare::consumer(brokers, group, input, &rtds::transform::PROFILE)?;
    let producer = bare::producer(brokers)?;
    let (tx, rx) = mpsc::sync_channel::<Vec<Consumed>>(4);
    let n = std::thread::scope(|scope| -> anyhow::Result<u64> {
        let producing = scope.spawn(|| -> anyhow::Result<()> {
            for batch in rx {
                for r in &batch {
                    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(output);
                    if let Some(k) = &r.key {
                        record = record.key(k.as_slice());
                    }
                    let clean = r.key.as_ref().and_then(|k| rows.get(k));
                    if let Some(p) = clean.or(r.payload.as_ref()) {
                        record = record.payload(p.as_slice());
                    }
                    if let Some(h) = &r.headers {
                        record = record.headers(h.clone());
                    }
                    bare::send(&producer, record)?;
                }
            }
            Ok(())
        });
        let mut n = 0u64;
        let mut batch = Vec::with_capacity(HAND_OVER);
        let polled = bare::read_to_end(&consumer, partitions, |m| {
            n += 1;
            let key = m.key().map(<[u8]>::to_vec);
            let clean = key.as_ref().is_some_and(|k| rows.contains_key(k));
            if !rows.is_empty() && !clean {
                anyhow::bail!("input record at offset {} has no clean row in {}", m.offset(), args[5]);
            }
            let payload = if clean { None } else { m.payload().map(<[u8]>::to_vec) };
            batch.push(Consumed { key, payload, headers: m.headers().map(|h| h.detach()) });
            if batch.len() == HAND_OVER {
                tx.send(std::mem::replace(&mut batch, Vec::with_capacity(HAND_OVER)))?;
            }
            Ok(())
        });
        if polled.is_ok() && !batch.is_empty() {
            tx.send(batch)?;
        }
        drop(tx);
        producing.join().map_err(|_| anyhow::anyhow!("the producing thread panicked"))??;
        polled.map(|()| n)
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
    let group = format!("bare-rows-{}", std::process::id());
    let (consumer, partitions) = bare::consumer(brokers, &group, topic, &rtds::transform::PROFILE)?;
    let mut rows = HashMap::new();
    bare::read_to_end(&consumer, partitions, |m| {
        rows.insert(m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec());
        Ok(())
    })?;
    Ok(rows)
}
