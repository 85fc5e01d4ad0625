//! Writing to Cassandra: the keyspace and table created if absent (an existing
//! table checked against the row contract), rows upserted by id with a
//! prepared INSERT, at bounded concurrency.

use anyhow::{Context, Result};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::serialize::value::SerializeValue;
use scylla::statement::prepared::PreparedStatement;

use super::CassandraOpts;
use super::options::{parse_consistency, replication_map};
use crate::row::{COLUMNS, INGESTED_AT, Kind, UserRow, WIDTH, names};
use crate::sinks::{ReadAt, Rejected, WriteError, Writer};

/// An open Cassandra table and its prepared INSERT.
pub struct CassandraWriter {
    /// `keyspace.table`.
    pub table: String,
    session: Session,
    insert: PreparedStatement,
    concurrency: usize,
}

impl CassandraWriter {
    /// Connect, create the keyspace and table if absent, check an existing
    /// table has the columns we write, and prepare the INSERT.
    pub async fn open(opts: &CassandraOpts, table: &str) -> Result<Self> {
        let consistency = parse_consistency(&opts.consistency)?;
        let replication = replication_map(&opts.replication)?;
        let session = super::connect(opts).await?;
        let ks = &opts.keyspace;
        // Names are validated identifiers (validate::parse_identifier), never quoted input.
        session
            .query_unpaged(format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"), &[])
            .await
            .with_context(|| format!("creating keyspace {ks}"))?;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {ks}.{table} ({}, {INGESTED_AT} text)",
            crate::sinks::column_ddl(Kind::cql)
        );
        session.query_unpaged(ddl, &[]).await.with_context(|| format!("creating table {ks}.{table}"))?;
        check_columns(&session, ks, table).await?;
        let placeholders = ["?"; WIDTH + 1].join(", ");
        let columns: Vec<&str> = names().chain([INGESTED_AT]).collect();
        let mut insert = session
            .prepare(format!("INSERT INTO {ks}.{table} ({}) VALUES ({placeholders})", columns.join(", ")))
            .await
            .with_context(|| format!("preparing the INSERT into {ks}.{table}"))?;
        insert.set_consistency(consistency);
        insert.set_is_idempotent(true);
        Ok(Self { table: format!("{ks}.{table}"), session, insert, concurrency: opts.concurrency as usize })
    }

    /// Upsert every row; a row Cassandra refuses for its content (an invalid
    /// request: a value too large, say) is rejected with the server's reason,
    /// the rest are written. Any other failure is the cluster's (down,
    /// overloaded, timed out): the upserts are idempotent, so the whole batch
    /// is retried.
    async fn write(&mut self, rows: &[UserRow]) -> Result<Rejected, WriteError> {
        let session = &self.session;
        let insert = &self.insert;
        // At most `concurrency` upserts in flight, each made only when it
        // starts: a driver request's future is a few KB, and a batch's worth
        // made up front was most of the stage's memory (bench/README.md, "Where
        // the loads' memory goes"). A `buffer_unordered` stream over the rows
        // would do the same but does not prove itself `Send` for every lifetime
        // when spawned.
        // Each id's last row only: two versions of one id written at once
        // would land in either order (the coordinator stamps each write).
        let latest = crate::row::last_per_id(rows.iter().enumerate().collect(), |(_, row)| row.uuid());
        let mut waiting = latest.into_iter();
        let mut running: FuturesUnordered<_> =
            waiting.by_ref().take(self.concurrency.max(1)).map(|(i, row)| upsert(session, insert, i, row)).collect();
        let mut results: Vec<(usize, Result<(), ExecutionError>)> = Vec::with_capacity(rows.len());
        while let Some(done) = running.next().await {
            results.push(done);
            if let Some((i, row)) = waiting.next() {
                running.push(upsert(session, insert, i, row));
            }
        }
        let mut rejected = Vec::new();
        for (i, result) in results {
            match result {
                Ok(()) => {}
                Err(e) if refused_for_its_content(&e) => rejected.push((i, e.to_string())),
                Err(e) => {
                    return Err(WriteError::Transient(anyhow::Error::from(e).context("writing rows to Cassandra")));
                }
            }
        }
        rejected.sort_by_key(|(i, _)| *i);
        Ok(rejected)
    }
}

async fn upsert(
    session: &Session,
    insert: &PreparedStatement,
    i: usize,
    row: &UserRow,
) -> (usize, Result<(), ExecutionError>) {
    let (id, texts, stamp) = (row.uuid(), row.texts(), row.ingested_at());
    // Each column as the contract says Cassandra holds it: the id a uuid, the rest text; then the stamp.
    let values: [&(dyn SerializeValue + Sync); WIDTH + 1] = std::array::from_fn(|i| match COLUMNS.get(i) {
        Some(c) if c.kind == Kind::Id => &id as &(dyn SerializeValue + Sync),
        Some(_) => &texts[i],
        None => &stamp,
    });
    (i, session.execute_unpaged(insert, &values[..]).await.map(|_| ()))
}

impl Writer for CassandraWriter {
    fn location(&self) -> String {
        self.table.clone()
    }
    fn write<'a>(
        &'a mut self,
        rows: &'a [UserRow],
        _: ReadAt<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Rejected, WriteError>> {
        Box::pin(CassandraWriter::write(self, rows))
    }
}

/// An error that is the row's fault, not the cluster's: the server found the
/// request invalid, or the driver could not serialize its values.
pub(super) fn refused_for_its_content(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::BadQuery(_)
            | ExecutionError::LastAttemptError(
                RequestAttemptError::DbError(DbError::Invalid, _)
                    | RequestAttemptError::SerializationError(_)
                    | RequestAttemptError::CqlRequestSerialization(_)
            )
    )
}

/// An existing table must have every column of the row contract, with the right type.
async fn check_columns(session: &Session, ks: &str, table: &str) -> Result<()> {
    let rows = session
        .query_unpaged(
            "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
            (ks, table),
        )
        .await
        .with_context(|| format!("reading the columns of {ks}.{table}"))?
        .into_rows_result()
        .with_context(|| format!("reading the columns of {ks}.{table}"))?;
    let mut have: std::collections::HashMap<String, String> =
        rows.rows::<(String, String)>().context("reading column names")?.collect::<Result<_, _>>()?;
    if !have.contains_key(INGESTED_AT) {
        // A table of an earlier version: the stamp's column joins it.
        session
            .query_unpaged(format!("ALTER TABLE {ks}.{table} ADD {INGESTED_AT} text"), &[])
            .await
            .with_context(|| format!("adding the column {INGESTED_AT} to {ks}.{table}"))?;
        have.insert(INGESTED_AT.to_owned(), "text".to_owned());
    }
    crate::sinks::check_columns(&format!("{ks}.{table}"), &have, Kind::cql, &[(INGESTED_AT, "text")])
}
