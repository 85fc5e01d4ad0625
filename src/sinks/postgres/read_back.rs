//! The ids a PostgreSQL table holds, with their ingest stamps, for `rtds reconcile`.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::row::INGESTED_AT;
use crate::sinks::Present;

/// Which of `ids` the table `schema.table` holds (for `rtds reconcile`).
pub async fn present(client: &Client, table: &str, ids: &[uuid::Uuid]) -> Result<Present> {
    let mut found = Present::new();
    for chunk in ids.chunks(50_000) {
        let rows = client
            .query(&format!("SELECT id, {INGESTED_AT} FROM {table} WHERE id = ANY($1)"), &[&chunk])
            .await
            .with_context(|| format!("reading ids back from {table}"))?;
        for r in rows {
            let at: Option<DateTime<Utc>> = r.get(1);
            found.insert(r.get(0), at.map(|t| t.timestamp_millis()));
        }
    }
    Ok(found)
}
