//! Baseline for `rtds load --sink cassandra`: consume the same users_created
//! rows and insert them with a bare scylla-driver loop of prepared statements
//! at the same concurrency, reading while writing, until the end of the input.
//! Usage: bare_cassandra BROKERS TOPIC GROUP NODE KEYSPACE CONCURRENCY

use std::time::Instant;

#[path = "common/bare.rs"]
mod bare;

use futures::StreamExt;
use rdkafka::message::Message;
use rtds::row::{COLUMNS, Kind, names};
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;
use scylla::value::CqlValue;

/// A row's values in the contract's column order.
type Row = Vec<Option<CqlValue>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, topic, group, node, ks) = (&args[1], &args[2], &args[3], &args[4], &args[5]);
    let concurrency: usize = args[6].parse()?;
    let session = SessionBuilder::new().known_node(node).build().await?;
    session
        .query_unpaged(format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"), &[])
        .await?;
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|c| if c.kind == Kind::Id { format!("{} uuid PRIMARY KEY", c.name) } else { format!("{} text", c.name) })
        .collect();
    session.query_unpaged(format!("CREATE TABLE IF NOT EXISTS {ks}.created_users ({})", cols.join(", ")), &[]).await?;
    let names: Vec<&str> = names().collect();
    let marks = vec!["?"; names.len()];
    let mut insert = session
        .prepare(format!("INSERT INTO {ks}.created_users ({}) VALUES ({})", names.join(", "), marks.join(", ")))
        .await?;
    insert.set_consistency(Consistency::LocalQuorum);

    // Reading and writing overlap: a thread consumes and parses rows into a
    // bounded channel while `concurrency` inserts are always in flight.
    let (tx, rx) = tokio::sync::mpsc::channel::<Row>(10_000);
    let (brokers, topic, group) = (brokers.clone(), topic.clone(), group.clone());
    let start = Instant::now();
    let reader = std::thread::spawn(move || read_rows(&brokers, &topic, &group, tx));
    let rows = futures::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|row| (row, rx)) });
    let mut n = 0u64;
    let mut inserts = std::pin::pin!(
        rows.map(|row| {
            let (session, insert) = (&session, &insert);
            async move { session.execute_unpaged(insert, row).await }
        })
        .buffer_unordered(concurrency)
    );
    while let Some(r) = inserts.next().await {
        r?;
        n += 1;
    }
    reader.join().map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"stage": "bare_cassandra", "in": n, "out": n, "seconds": seconds, "records_per_s": n as f64 / seconds})
    );
    Ok(())
}

/// Consume `topic` to its end, each row parsed into its values, into `tx`.
fn read_rows(brokers: &str, topic: &str, group: &str, tx: tokio::sync::mpsc::Sender<Row>) -> anyhow::Result<()> {
    let (consumer, partitions) = bare::consumer(brokers, group, topic, &rtds::load::PROFILE)?;
    bare::read_to_end(&consumer, partitions, |m| {
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default())?;
        let mut row = Row::with_capacity(COLUMNS.len());
        for c in &COLUMNS {
            let text = v[c.name].as_str();
            row.push(match c.kind {
                Kind::Id => Some(CqlValue::Uuid(uuid::Uuid::parse_str(text.unwrap_or_default())?)),
                _ => text.map(|s| CqlValue::Text(s.to_owned())),
            });
        }
        tx.blocking_send(row).map_err(|_| anyhow::anyhow!("the writer stopped"))
    })
}
