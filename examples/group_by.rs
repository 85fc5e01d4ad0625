//! The bound of `rtds aggregate` in `make bench` (issue 40): the same SQL as
//! one batch GROUP BY over the same records, DataFusion's single-step
//! aggregate over all of them in memory, with the windows of their ingest
//! stamps: reading the topic, decoding (rtds's decoder) and aggregating, no
//! state kept between batches and nothing emitted before the end.
//!
//! Usage: group_by BROKERS TOPIC SQL_FILE

#[path = "common/bare.rs"]
mod bare;

use std::sync::Arc;
use std::time::Instant;

use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use rdkafka::Message;
use rtds::aggregate::window::{take_window, windowed_schema};
use rtds::raw::decode::{RawDecoder, raw_schema};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, sql] = &args[..] else { anyhow::bail!("usage: group_by BROKERS TOPIC SQL_FILE") };
    let windowed = take_window(&std::fs::read_to_string(sql)?).await?;
    let (start, cpu_before) = (Instant::now(), bare::cpu_seconds()?);
    let group = format!("group-by-{}", std::process::id());
    let (consumer, partitions) = bare::consumer(brokers, &group, topic, &rtds::aggregate::PROFILE)?;
    let (decoder, schema) = (RawDecoder::default(), windowed_schema(&raw_schema()));
    let (mut batches, mut payloads, mut stamps, mut n) = (Vec::new(), Vec::new(), Vec::new(), 0u64);
    let mut flush = |payloads: &mut Vec<Vec<u8>>, stamps: &mut Vec<Option<i64>>| -> anyhow::Result<()> {
        let slices: Vec<Option<&[u8]>> = payloads.iter().map(|p| Some(p.as_slice())).collect();
        let decoded = decoder.decode(&slices)?;
        let times: Vec<Option<i64>> = decoded.rows.iter().map(|i| stamps[*i]).collect();
        batches.push(windowed.windows.assign(&decoded.batch, &times, &schema)?);
        payloads.clear();
        stamps.clear();
        Ok(())
    };
    bare::read_to_end(&consumer, partitions, |m| {
        n += 1;
        payloads.push(m.payload().unwrap_or_default().to_vec());
        let stamp = rdkafka::message::Headers::iter(m.headers().expect("ingest stamps"))
            .find(|h| h.key == rtds::kafka::INGESTED_AT)
            .and_then(|h| chrono::DateTime::parse_from_rfc3339(std::str::from_utf8(h.value?).ok()?).ok());
        stamps.push(stamp.map(|t| t.timestamp_millis()));
        if payloads.len() == rtds::aggregate::PROFILE.batch_size {
            flush(&mut payloads, &mut stamps)?;
        }
        Ok(())
    })?;
    flush(&mut payloads, &mut stamps)?;
    let ctx = SessionContext::new();
    ctx.register_table("users_raw", Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    let rows: usize = ctx.sql(&windowed.sql).await?.collect().await?.iter().map(|b| b.num_rows()).sum();
    let (wall, cpu) = (start.elapsed().as_secs_f64(), bare::cpu_seconds()? - cpu_before);
    println!(
        "{}",
        serde_json::json!({"stage": "group_by", "in": n, "out": rows, "seconds": wall,
            "timed_wall_s": wall, "timed_cpu_s": cpu})
    );
    Ok(())
}
