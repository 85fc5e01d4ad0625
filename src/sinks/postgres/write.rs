//! Writing to PostgreSQL (tokio-postgres): the schema and table created if
//! absent (an existing table checked against the row contract), then rows upserted.
//! Each batch is spread by id over `--pg-connections` connections; each one
//! upserts its share with a binary COPY into a temporary staging table, then one
//! `INSERT … ON CONFLICT (id) DO UPDATE`, in one transaction. A batch succeeds
//! when every share committed (a retry re-upserts the shares that had: same rows).
//!
//! Most batches hold only new ids, and for them the upsert is an insert: such a
//! share is first COPYed straight into the table (half the server's work: no
//! staging write and re-read). If an id is already there, the COPY fails as a
//! whole, is rolled back, and the share is upserted as above; the next
//! `STAGED_AFTER_CONFLICT` batches then upsert at once (a topic being replayed).

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::pin_mut;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use super::{PostgresOpts, connect};
use crate::row::{COLUMNS, INGESTED_AT, Kind, UserRow, WIDTH, last_per_id, names};
use crate::sinks::{ReadAt, Rejected, WriteError, Writer};

/// How PostgreSQL holds a column of the row contract (for binary COPY).
fn column_type(kind: Kind) -> Type {
    match kind {
        Kind::Id => Type::UUID,
        Kind::Timestamp => Type::TIMESTAMPTZ,
        Kind::Text => Type::TEXT,
    }
}

/// The contract's column names, comma-separated.
fn column_list() -> String {
    names().collect::<Vec<_>>().join(", ")
}

/// Batches upserted through the staging table, without trying a plain COPY
/// first, after a COPY met an id already in the table.
const STAGED_AFTER_CONFLICT: u32 = 16;

pub struct PostgresWriter {
    opts: PostgresOpts,
    /// `schema.table`, both validated identifiers.
    pub table: String,
    /// Batches still to upsert through staging before a plain COPY is tried again.
    staged_next: u32,
    /// One per share; dropped after a connection failure, the next write reconnects.
    clients: Vec<Option<Client>>,
}

impl PostgresWriter {
    /// Connect, create the schema and table if absent, and check an existing
    /// table has the columns we write.
    pub async fn open(opts: &PostgresOpts, table: &str) -> Result<Self> {
        let client = connect(opts).await?;
        let schema = &opts.pg_schema;
        // IF NOT EXISTS is not safe against a concurrent create: two replicas
        // starting at once both try it, and one fails on pg_namespace's unique
        // index. The advisory lock (held to the end of this one implicit
        // transaction) makes the second wait for the first, then find it done.
        let ddl = format!(
            "SELECT pg_advisory_xact_lock(hashtext('rtds: create schema and table')); \
             CREATE SCHEMA IF NOT EXISTS {schema}; \
             CREATE TABLE IF NOT EXISTS {schema}.{table} ({}, {INGESTED_AT} timestamptz, loaded_at timestamptz NOT NULL DEFAULT now()); \
             ALTER TABLE {schema}.{table} ADD COLUMN IF NOT EXISTS {INGESTED_AT} timestamptz",
            crate::sinks::column_ddl(Kind::postgres)
        );
        client.batch_execute(&ddl).await.with_context(|| format!("creating table {schema}.{table}"))?;
        check_columns(&client, schema, table).await?;
        let table = format!("{schema}.{table}");
        create_staging(&client, &table).await?;
        let mut clients = vec![Some(client)];
        clients.resize_with(opts.pg_connections as usize, || None);
        Ok(Self { opts: opts.clone(), table, staged_next: 0, clients })
    }

    /// Upsert `rows`. A row PostgreSQL refuses for its content (a value it
    /// cannot hold: class 22, or a constraint: class 23) is rejected with the
    /// server's message and the rest of its share is written.
    async fn write(&mut self, rows: &[UserRow]) -> Result<Rejected, WriteError> {
        let mut rejected = Vec::new();
        let mut good = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            match timestamps(row) {
                Ok(ts) => {
                    let stamp = row.ingested_at().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                    good.push(Timed { i, row, ts, stamp: stamp.map(|t| t.with_timezone(&Utc)) })
                }
                Err(why) => rejected.push((i, why)),
            }
        }
        if good.is_empty() {
            return Ok(rejected);
        }
        let shares = shard(good, self.clients.len());
        let copy_first = self.staged_next == 0;
        let writes = self.clients.iter_mut().zip(shares);
        let writes = writes.map(|(client, rows)| write_share(&self.opts, &self.table, client, rows, copy_first));
        // Every share runs to its end (none is cut off mid-transaction); a fatal
        // error outranks a transient one.
        let mut results = futures::future::join_all(writes).await;
        let conflicted = results.iter().any(|r| matches!(r, Ok((Upserted::AfterConflict, _))));
        self.staged_next = if conflicted { STAGED_AFTER_CONFLICT } else { self.staged_next.saturating_sub(1) };
        results.sort_by_key(|r| !matches!(r, Err(WriteError::Fatal(_))));
        for result in results {
            rejected.extend(result?.1);
        }
        rejected.sort_by_key(|(i, _)| *i);
        Ok(rejected)
    }
}

impl Writer for PostgresWriter {
    fn location(&self) -> String {
        self.table.clone()
    }
    fn write<'a>(
        &'a mut self,
        rows: &'a [UserRow],
        _: ReadAt<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Rejected, WriteError>> {
        Box::pin(PostgresWriter::write(self, rows))
    }
}

/// A row with its place in the batch and its timestamp columns parsed (the
/// other slots stay empty).
#[derive(Clone, Copy)]
struct Timed<'a> {
    i: usize,
    row: &'a UserRow,
    ts: [Option<DateTime<Utc>>; WIDTH],
    /// The row's ingest stamp (one that is not RFC 3339 is kept as none: it is
    /// the record's provenance, not the user's data).
    stamp: Option<DateTime<Utc>>,
}

/// Spread rows over `n` shares by id, so one id always lands in the same share
/// (two transactions never upsert the same row at once).
fn shard(rows: Vec<Timed<'_>>, n: usize) -> Vec<Vec<Timed<'_>>> {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let mut shares: Vec<Vec<Timed<'_>>> = (0..n).map(|_| Vec::with_capacity(rows.len() / n + 1)).collect();
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    for row in rows {
        shares[(hasher.hash_one(row.row.id()) % n as u64) as usize].push(row);
    }
    shares
}

/// How a share got into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upserted {
    /// Every id was new: one plain COPY.
    Copied,
    /// Through the staging table, without trying a plain COPY.
    Staged,
    /// Through the staging table, after a plain COPY met an id already there
    /// (or another constraint).
    AfterConflict,
}

/// Upsert one share on its connection, (re)connecting first if needed; the
/// rows refused for their content, found by `isolate`.
async fn write_share(
    opts: &PostgresOpts,
    table: &str,
    client: &mut Option<Client>,
    rows: Vec<Timed<'_>>,
    copy_first: bool,
) -> Result<(Upserted, Rejected), WriteError> {
    if rows.is_empty() {
        return Ok((Upserted::Copied, Vec::new()));
    }
    if client.as_ref().is_none_or(Client::is_closed) {
        *client = None;
        *client = Some(connect_staging(opts, table).await.map_err(WriteError::Transient)?);
    }
    let c = client.as_mut().expect("connected above");
    let mut rejected = Vec::new();
    let result = match upsert(c, table, rows.clone(), copy_first).await {
        Err(e) if refused_for_its_content(&e) => {
            isolate(c, table, rows, &mut rejected).await.map(|()| Upserted::AfterConflict)
        }
        other => other,
    };
    result.map(|u| (u, rejected)).map_err(|e| {
        let transient = is_transient(&e);
        if transient {
            *client = None;
        }
        let e = anyhow::Error::from(e).context(format!("upserting into {table}"));
        if transient { WriteError::Transient(e) } else { WriteError::Fatal(e) }
    })
}

/// A value the table cannot hold (class 22: a NUL in text, say) or a
/// constraint it breaks (class 23): the row's fault, not the server's.
fn refused_for_its_content(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| matches!(&c.code()[..2], "22" | "23"))
}

/// Find the rows PostgreSQL refuses by halving: a part that goes in is
/// committed, a part that fails is split again, down to single rows, which are
/// rejected with the server's message: about 2·log2(n) upserts for one bad row in n.
async fn isolate(
    client: &mut Client,
    table: &str,
    rows: Vec<Timed<'_>>,
    rejected: &mut Rejected,
) -> Result<(), tokio_postgres::Error> {
    let mut todo = vec![rows];
    while let Some(mut part) = todo.pop() {
        match upsert(client, table, part.clone(), false).await {
            Ok(_) => {}
            Err(e) if refused_for_its_content(&e) && part.len() == 1 => {
                let why =
                    e.as_db_error().map_or_else(|| e.to_string(), |d| format!("{} ({})", d.message(), d.code().code()));
                rejected.push((part[0].i, why));
            }
            Err(e) if refused_for_its_content(&e) => {
                let half = part.split_off(part.len() / 2);
                todo.push(half);
                todo.push(part);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A connection with its session's staging table, created once (outside any
/// transaction, so a rolled-back batch does not take it away) and emptied by
/// every commit.
async fn connect_staging(opts: &PostgresOpts, table: &str) -> Result<Client> {
    let client = connect(opts).await?;
    create_staging(&client, table).await?;
    Ok(client)
}

async fn create_staging(client: &Client, table: &str) -> Result<()> {
    let ddl = format!("CREATE TEMP TABLE rtds_staging (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS");
    client.batch_execute(&ddl).await.context("creating the staging table")
}

/// The timestamp columns parsed; text that is not RFC 3339 is refused.
fn timestamps(row: &UserRow) -> Result<[Option<DateTime<Utc>>; WIDTH], String> {
    let mut ts = [None; WIDTH];
    for (i, c) in COLUMNS.iter().enumerate().filter(|(_, c)| c.kind == Kind::Timestamp) {
        if let Some(s) = row.get(i) {
            let t = DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("{} is not an RFC 3339 timestamp ({s:?}): {e}", c.name))?;
            ts[i] = Some(t.with_timezone(&Utc));
        }
    }
    Ok(ts)
}

async fn upsert(
    client: &mut Client,
    table: &str,
    rows: Vec<Timed<'_>>,
    copy_first: bool,
) -> Result<Upserted, tokio_postgres::Error> {
    // ON CONFLICT cannot touch one row twice in a statement (nor COPY insert an
    // id twice): keep each id's last row.
    let rows = last_per_id(rows, |t| t.row.uuid());
    if copy_first {
        let tx = client.transaction().await?;
        match copy_rows(&tx, table, &rows).await {
            Ok(()) => {
                tx.commit().await?;
                return Ok(Upserted::Copied);
            }
            // An id already there (or any constraint the upsert may satisfy,
            // e.g. a table of ours without loaded_at's default): upsert instead.
            Err(e) if e.code().is_some_and(|c| c.code().starts_with("23")) => tx.rollback().await?,
            Err(e) => return Err(e),
        }
    }
    let tx = client.transaction().await?;
    copy_rows(&tx, "rtds_staging", &rows).await?;
    let cols = column_list();
    let updates: Vec<String> = names().skip(1).map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    tx.batch_execute(&format!(
        "INSERT INTO {table} ({cols}, {INGESTED_AT}, loaded_at) SELECT {cols}, {INGESTED_AT}, now() FROM rtds_staging \
         ON CONFLICT (id) DO UPDATE SET {}, {INGESTED_AT} = EXCLUDED.{INGESTED_AT}, loaded_at = EXCLUDED.loaded_at",
        updates.join(", ")
    ))
    .await?;
    tx.commit().await?;
    Ok(if copy_first { Upserted::AfterConflict } else { Upserted::Staged })
}

/// Binary COPY of `rows` into `table`, with their ingest stamps (loaded_at takes its default, now()).
async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    rows: &[Timed<'_>],
) -> Result<(), tokio_postgres::Error> {
    let copy = format!("COPY {table} ({}, {INGESTED_AT}) FROM STDIN (FORMAT binary)", column_list());
    let sink = tx.copy_in(&copy).await?;
    let types: Vec<Type> = COLUMNS.iter().map(|c| column_type(c.kind)).chain([Type::TIMESTAMPTZ]).collect();
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for Timed { row, ts, stamp, .. } in rows {
        let (id, texts) = (row.uuid(), row.texts());
        // Each column as the contract says PostgreSQL holds it; then the stamp.
        let values: [&(dyn ToSql + Sync); WIDTH + 1] = std::array::from_fn(|i| match COLUMNS.get(i).map(|c| c.kind) {
            Some(Kind::Id) => &id as &(dyn ToSql + Sync),
            Some(Kind::Timestamp) => &ts[i],
            Some(Kind::Text) => &texts[i],
            None => stamp,
        });
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Connection trouble and server shutdowns are worth a retry; a constraint or
/// type error is not.
pub(super) fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            matches!(class, "08" | "40" | "53" | "57" | "58") || *code == SqlState::LOCK_NOT_AVAILABLE
        }
    }
}

/// The columns of `schema.table`, each with its type (none if it does not exist).
pub(super) async fn column_types(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<std::collections::HashMap<String, String>> {
    let rows = client
        .query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await
        .with_context(|| format!("reading the columns of {schema}.{table}"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// An existing table must have every column of the row contract, with the right type.
async fn check_columns(client: &Client, schema: &str, table: &str) -> Result<()> {
    let have = column_types(client, schema, table).await?;
    crate::sinks::check_columns(
        &format!("{schema}.{table}"),
        &have,
        Kind::postgres,
        &[(INGESTED_AT, "timestamp with time zone"), ("loaded_at", "timestamp with time zone")],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> UserRow {
        let json = format!(
            r#"{{"id":"{id}","first_name":null,"last_name":null,"gender":null,"address":null,"post_code":null,"email":null,"username":null,"dob":null,"registered_date":null,"phone":null,"picture":null}}"#
        );
        UserRow::parse(Some(json.as_bytes())).unwrap()
    }

    #[test]
    fn shares_keep_every_row_and_each_id_in_one_share() {
        let ids: Vec<String> = (0..200).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect();
        // Every id twice: both copies must land in the same share.
        let rows: Vec<UserRow> = ids.iter().chain(&ids).map(|id| row(id)).collect();
        let shares = shard(
            rows.iter().enumerate().map(|(i, row)| Timed { i, row, ts: [None; WIDTH], stamp: None }).collect(),
            3,
        );
        assert_eq!(shares.len(), 3);
        assert_eq!(shares.iter().map(Vec::len).sum::<usize>(), 400);
        assert!(shares.iter().all(|s| !s.is_empty()), "200 ids spread over 3 shares leave none empty");
        for id in &ids {
            let holding = shares.iter().filter(|s| s.iter().any(|t| t.row.id() == id)).count();
            assert_eq!(holding, 1, "{id} is in {holding} shares");
        }
        let one = row(&ids[0]);
        assert_eq!(shard(vec![Timed { i: 0, row: &one, ts: [None; WIDTH], stamp: None }], 1)[0].len(), 1);
    }
}
