//! The ids a Cassandra table holds, with their ingest stamps, for `rtds reconcile`.

use anyhow::{Context, Result};
use futures::StreamExt;
use scylla::client::session::Session;

use crate::row::{INGESTED_AT, stamp_millis};
use crate::sinks::Present;

/// Which of `ids` the table `keyspace.table` holds, each with the ingest
/// stamp of its version (for `rtds reconcile`).
pub async fn present(session: &Session, table: &str, ids: &[uuid::Uuid]) -> Result<Present> {
    let query = session
        .prepare(format!("SELECT id, {INGESTED_AT} FROM {table} WHERE id IN ?"))
        .await
        .with_context(|| format!("preparing a read of {table}"))?;
    let chunks = ids.chunks(100).map(|chunk| {
        let query = &query;
        async move {
            let rows = session.execute_unpaged(query, (chunk,)).await?.into_rows_result()?;
            let found: Vec<(uuid::Uuid, Option<i64>)> = rows
                .rows::<(uuid::Uuid, Option<String>)>()?
                .map(|r| r.map(|(id, at)| (id, at.as_deref().and_then(stamp_millis))))
                .collect::<Result<_, _>>()?;
            Ok::<_, anyhow::Error>(found)
        }
    });
    let mut found = Present::new();
    let mut reads = futures::stream::iter(chunks).buffer_unordered(16);
    while let Some(chunk) = reads.next().await {
        found.extend(chunk.with_context(|| format!("reading ids back from {table}"))?);
    }
    Ok(found)
}
