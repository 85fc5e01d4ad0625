//! Keyed rows (an aggregate's windows) in a Cassandra table whose columns
//! come from the SQL's result: created if absent, partitioned by the window's
//! start (a window's groups read together) with the rest of the key
//! clustering, and upserted by a prepared INSERT: a window emitted again
//! overwrites itself.

use anyhow::{Context, Result};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue};

use super::CassandraOpts;
use super::options::{parse_consistency, replication_map};
use crate::sinks::WriteError;
use crate::sinks::keyed::{KeyedWriter, Shape, Value};

pub struct CassandraWindows {
    /// `keyspace.table`.
    table: String,
    session: Session,
    insert: PreparedStatement,
    concurrency: usize,
}

impl CassandraWindows {
    pub async fn open(opts: &CassandraOpts, table: &str, shape: &Shape) -> Result<Self> {
        let consistency = parse_consistency(&opts.consistency)?;
        let replication = replication_map(&opts.replication)?;
        let session = super::connect(opts).await?;
        let ks = &opts.keyspace;
        let names: Vec<&str> = shape.names().collect();
        // Names are validated identifiers (keyed::Shape, validate::parse_identifier), never quoted input.
        session
            .query_unpaged(format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"), &[])
            .await
            .with_context(|| format!("creating keyspace {ks}"))?;
        let columns: Vec<String> = shape.columns.iter().map(|c| format!("{} {}", c.name, c.kind.cql())).collect();
        let (partition, clustering) = names[..shape.key].split_at(1.min(shape.key));
        let key =
            std::iter::once(format!("({})", partition.join(", "))).chain(clustering.iter().map(|c| c.to_string()));
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {ks}.{table} ({}, PRIMARY KEY ({}))",
            columns.join(", "),
            key.collect::<Vec<_>>().join(", ")
        );
        session.query_unpaged(ddl, &[]).await.with_context(|| format!("creating table {ks}.{table}"))?;
        let placeholders = vec!["?"; names.len()].join(", ");
        let mut insert = session
            .prepare(format!("INSERT INTO {ks}.{table} ({}) VALUES ({placeholders})", names.join(", ")))
            .await
            .with_context(|| {
                format!("preparing the INSERT into {ks}.{table} (an existing table must have its columns)")
            })?;
        insert.set_consistency(consistency);
        insert.set_is_idempotent(true);
        Ok(Self { table: format!("{ks}.{table}"), session, insert, concurrency: opts.concurrency as usize })
    }

    async fn upsert(&mut self, rows: &[Vec<Value>]) -> Result<(), WriteError> {
        let (session, insert) = (&self.session, &self.insert);
        // At most `concurrency` in flight (a named fn, not a closure: see write.rs).
        let mut waiting = rows.iter();
        let mut running: FuturesUnordered<_> =
            waiting.by_ref().take(self.concurrency.max(1)).map(|row| execute(session, insert, row)).collect();
        while let Some(done) = running.next().await {
            if let Err(e) = done {
                let refused = super::write::refused_for_its_content(&e);
                let e = anyhow::Error::from(e).context(format!("upserting windows into {}", self.table));
                return Err(if refused { WriteError::Fatal(e) } else { WriteError::Transient(e) });
            }
            if let Some(row) = waiting.next() {
                running.push(execute(session, insert, row));
            }
        }
        Ok(())
    }
}

async fn execute(session: &Session, insert: &PreparedStatement, row: &[Value]) -> Result<(), ExecutionError> {
    let values: Vec<Option<CqlValue>> = row.iter().map(cql).collect();
    session.execute_unpaged(insert, values).await.map(|_| ())
}

fn cql(value: &Value) -> Option<CqlValue> {
    Some(match value {
        Value::Null => return None,
        Value::Int(v) => CqlValue::BigInt(*v),
        Value::Float(v) => CqlValue::Double(*v),
        Value::Text(v) => CqlValue::Text(v.clone()),
        Value::Bool(v) => CqlValue::Boolean(*v),
        Value::Time(ms) => CqlValue::Timestamp(CqlTimestamp(*ms)),
    })
}

impl KeyedWriter for CassandraWindows {
    fn location(&self) -> String {
        self.table.clone()
    }

    fn upsert<'a>(&'a mut self, rows: &'a [Vec<Value>]) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(CassandraWindows::upsert(self, rows))
    }
}
