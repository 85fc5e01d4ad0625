//! Cassandra sink (scylla driver): its options, opening (create or check the
//! table), the write of a batch, the read-back of ids. Credentials only from
//! RTDS_CASSANDRA_USER / RTDS_CASSANDRA_PASSWORD(_FILE).
//! Rows are upserted by id with a prepared INSERT, at bounded concurrency.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::serialize::value::SerializeValue;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;

use super::{Rejected, WriteError};
use crate::error::{UsageError, usage};
use crate::row::{COLUMNS, INGESTED_AT, Kind, UserRow, WIDTH, names, stamp_millis};
use crate::secrets;

/// Cassandra connection settings. User and password come only from
/// RTDS_CASSANDRA_USER / RTDS_CASSANDRA_PASSWORD (or RTDS_CASSANDRA_PASSWORD_FILE).
#[derive(Debug, Clone, clap::Args)]
pub struct CassandraOpts {
    /// Cassandra contact points, comma-separated host:port.
    #[arg(long, env = "RTDS_CASSANDRA_NODES", default_value = "127.0.0.1:9042", value_delimiter = ',')]
    pub cassandra_nodes: Vec<String>,
    /// Keyspace.
    #[arg(long, env = "RTDS_KEYSPACE", default_value = "spark_streams", value_parser = crate::names::parse_identifier)]
    pub keyspace: String,
    /// Replication of the keyspace when it has to be created, e.g. "SimpleStrategy:1" or "NetworkTopologyStrategy:dc1=3".
    #[arg(long, env = "RTDS_REPLICATION", default_value = "SimpleStrategy:1")]
    pub replication: String,
    /// Write consistency level.
    #[arg(long, env = "RTDS_CONSISTENCY", default_value = "LOCAL_QUORUM")]
    pub consistency: String,
    /// Concurrent writes in flight.
    #[arg(long, env = "RTDS_CONCURRENCY", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Use TLS to Cassandra, verifying each node's certificate against RTDS_CASSANDRA_CA_FILE (else the
    /// system's CAs) and the node's address.
    #[arg(long, env = "RTDS_CASSANDRA_TLS")]
    pub cassandra_tls: bool,
    /// Connect timeout.
    #[arg(long, env = "RTDS_CONNECT_TIMEOUT", default_value = "10s", value_parser = crate::names::parse_duration)]
    pub connect_timeout: Duration,
}

pub struct CassandraSink {
    /// `keyspace.table`.
    pub table: String,
    session: Session,
    insert: PreparedStatement,
    concurrency: usize,
}

impl CassandraSink {
    /// Connect, create the keyspace and table if absent, check an existing
    /// table has the columns we write, and prepare the INSERT.
    pub async fn open(opts: &CassandraOpts, table: &str) -> Result<Self> {
        let consistency = parse_consistency(&opts.consistency)?;
        let replication = replication_map(&opts.replication)?;
        let session = connect(opts).await?;
        let ks = &opts.keyspace;
        // Names are validated identifiers (names::parse_identifier), never quoted input.
        session
            .query_unpaged(format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"), &[])
            .await
            .with_context(|| format!("creating keyspace {ks}"))?;
        let ddl =
            format!("CREATE TABLE IF NOT EXISTS {ks}.{table} ({}, {INGESTED_AT} text)", super::column_ddl(Kind::cql));
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
        let mut waiting = rows.iter().enumerate();
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

impl super::Store for CassandraSink {
    fn location(&self) -> String {
        self.table.clone()
    }
    fn write<'a>(&'a mut self, rows: &'a [UserRow]) -> futures::future::BoxFuture<'a, Result<Rejected, WriteError>> {
        Box::pin(CassandraSink::write(self, rows))
    }
}

/// An error that is the row's fault, not the cluster's: the server found the
/// request invalid, or the driver could not serialize its values.
fn refused_for_its_content(e: &ExecutionError) -> bool {
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

/// Which of `ids` the table `keyspace.table` holds, each with the ingest
/// stamp of its version (for `rtds reconcile`).
pub async fn present(session: &Session, table: &str, ids: &[uuid::Uuid]) -> Result<super::Present> {
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
    let mut found = super::Present::new();
    let mut reads = futures::stream::iter(chunks).buffer_unordered(16);
    while let Some(chunk) = reads.next().await {
        found.extend(chunk.with_context(|| format!("reading ids back from {table}"))?);
    }
    Ok(found)
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
    super::check_columns(&format!("{ks}.{table}"), &have, Kind::cql, &[(INGESTED_AT, "text")])
}

/// `SimpleStrategy:1` or `NetworkTopologyStrategy:dc1=3,dc2=2` as a CQL map.
fn replication_map(spec: &str) -> Result<String> {
    let bad = || {
        UsageError(format!(
            "invalid --replication {spec:?}: use SimpleStrategy:N or NetworkTopologyStrategy:dc1=N,dc2=M"
        ))
    };
    let (class, rest) = spec.split_once(':').ok_or_else(bad)?;
    let factor = |n: &str| n.trim().parse::<u16>().ok().filter(|n| (1..=32).contains(n)).ok_or_else(bad);
    match class.trim() {
        "SimpleStrategy" => Ok(format!("{{'class': 'SimpleStrategy', 'replication_factor': {}}}", factor(rest)?)),
        "NetworkTopologyStrategy" => {
            let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_owned()];
            for dc in rest.split(',') {
                let (name, n) = dc.split_once('=').ok_or_else(bad)?;
                let name = name.trim();
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)) {
                    return Err(bad().into());
                }
                parts.push(format!("'{name}': {}", factor(n)?));
            }
            Ok(format!("{{{}}}", parts.join(", ")))
        }
        _ => Err(bad().into()),
    }
}

fn parse_consistency(s: &str) -> Result<Consistency> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        _ => return usage(format!("invalid --consistency {s:?}: use ONE, QUORUM, LOCAL_QUORUM, ALL, ...")),
    })
}

/// Open a session to the contact points, failing after `connect_timeout`.
pub async fn connect(opts: &CassandraOpts) -> Result<Session> {
    let nodes = opts.cassandra_nodes.join(",");
    let mut builder = SessionBuilder::new().known_nodes(&opts.cassandra_nodes).connection_timeout(opts.connect_timeout);
    if let Some(user) = secrets::env("RTDS_CASSANDRA_USER")? {
        let password = secrets::env("RTDS_CASSANDRA_PASSWORD")?.unwrap_or_default();
        builder = builder.user(user, password);
    }
    if opts.cassandra_tls {
        builder = builder.tls_context(Some(tls_context()?));
    }
    // The driver retries contact points on its own; bound the whole attempt.
    let session = tokio::time::timeout(opts.connect_timeout * 2, builder.build())
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {:?}", opts.connect_timeout * 2))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("connecting to Cassandra at {nodes}"))?;
    Ok(session)
}

/// TLS that verifies the server: its certificate against RTDS_CASSANDRA_CA_FILE
/// (else the system's CAs); the driver checks each node's certificate against
/// the address it connects to.
fn tls_context() -> Result<openssl::ssl::SslContext> {
    use openssl::ssl::{SslContextBuilder, SslMethod, SslVerifyMode};
    let mut ctx = SslContextBuilder::new(SslMethod::tls()).context("creating a TLS context")?;
    if let Some(ca) = std::env::var_os("RTDS_CASSANDRA_CA_FILE") {
        ctx.set_ca_file(&ca).with_context(|| format!("reading the Cassandra CA file {}", ca.to_string_lossy()))?;
    } else {
        ctx.set_default_verify_paths().context("loading the system CA certificates")?;
    }
    ctx.set_verify(SslVerifyMode::PEER);
    Ok(ctx.build())
}

/// The server's `release_version`.
pub async fn server_version(session: &Session) -> Result<String> {
    let rows = session
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .context("querying system.local")?
        .into_rows_result()
        .context("reading system.local")?;
    let (version,): (String,) = rows.single_row().context("reading release_version")?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_specs() {
        assert_eq!(
            replication_map("SimpleStrategy:1").unwrap(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        assert_eq!(
            replication_map("NetworkTopologyStrategy:dc1=3,dc2=2").unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        for bad in
            ["SimpleStrategy", "SimpleStrategy:0", "Evil:1", "NetworkTopologyStrategy:dc'1=3", "SimpleStrategy:1}"]
        {
            let e = replication_map(bad).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2, "{bad}");
        }
    }

    #[test]
    fn consistency_levels() {
        assert_eq!(parse_consistency("local_quorum").unwrap(), Consistency::LocalQuorum);
        assert!(parse_consistency("MOST").is_err());
    }
}
