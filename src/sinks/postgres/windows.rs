//! Keyed rows (an aggregate's windows) in a PostgreSQL table whose columns
//! come from the SQL's result: created if absent, with the key as its primary
//! key, and upserted by it (`INSERT … ON CONFLICT (key) DO UPDATE`), a
//! window emitted again overwriting itself. One transaction per write.

use anyhow::{Context, Result};
use chrono::DateTime;
use futures::future::BoxFuture;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::{PostgresOpts, connect};
use crate::sinks::WriteError;
use crate::sinks::keyed::{KeyedWriter, Kind, Shape, Value};

/// Rows a statement carries: PostgreSQL takes at most 65,535 parameters.
const ROWS_PER_STATEMENT: usize = 500;

pub struct PostgresWindows {
    opts: PostgresOpts,
    /// `schema.table`, both validated identifiers.
    table: String,
    shape: Shape,
    /// Dropped after a connection failure; the next write reconnects.
    client: Option<Client>,
}

impl PostgresWindows {
    pub async fn open(opts: &PostgresOpts, table: &str, shape: &Shape) -> Result<Self> {
        let client = connect(opts).await?;
        let schema = &opts.pg_schema;
        let columns: Vec<String> = shape.columns.iter().map(|c| format!("{} {}", c.name, c.kind.postgres())).collect();
        let key: Vec<&str> = shape.names().take(shape.key).collect();
        // Names are validated identifiers (keyed::Shape, validate::parse_identifier), never quoted input.
        let ddl = format!(
            "SELECT pg_advisory_xact_lock(hashtext('rtds: create schema and table')); \
             CREATE SCHEMA IF NOT EXISTS {schema}; \
             CREATE TABLE IF NOT EXISTS {schema}.{table} ({}, PRIMARY KEY ({}))",
            columns.join(", "),
            key.join(", ")
        );
        client.batch_execute(&ddl).await.with_context(|| format!("creating table {schema}.{table}"))?;
        check_columns(&client, schema, table, shape).await?;
        Ok(Self { opts: opts.clone(), table: format!("{schema}.{table}"), shape: shape.clone(), client: Some(client) })
    }

    /// `INSERT … ON CONFLICT (key) DO UPDATE` of `rows` rows.
    fn statement(&self, rows: usize) -> String {
        let names: Vec<&str> = self.shape.names().collect();
        let width = names.len();
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let params: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let key = &names[..self.shape.key];
        let on_conflict = if width == key.len() {
            "DO NOTHING".to_owned()
        } else {
            let set: Vec<String> = names[key.len()..].iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
            format!("DO UPDATE SET {}", set.join(", "))
        };
        format!(
            "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) {on_conflict}",
            self.table,
            names.join(", "),
            tuples.join(", "),
            key.join(", ")
        )
    }

    async fn upsert(&mut self, rows: &[Vec<Value>]) -> Result<(), WriteError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.opts).await.map_err(WriteError::Transient)?);
        }
        let statements: Vec<(String, Vec<Param>)> = rows
            .chunks(ROWS_PER_STATEMENT)
            .map(|chunk| {
                let params = chunk
                    .iter()
                    .flat_map(|row| row.iter().zip(&self.shape.columns).map(|(v, c)| param(v, c.kind)))
                    .collect();
                (self.statement(chunk.len()), params)
            })
            .collect();
        let client = self.client.as_mut().expect("connected above");
        let result: Result<(), tokio_postgres::Error> = async {
            let tx = client.transaction().await?;
            for (sql, params) in &statements {
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
                tx.execute(sql.as_str(), &refs).await?;
            }
            tx.commit().await
        }
        .await;
        result.map_err(|e| {
            let transient = super::write::is_transient(&e);
            if transient {
                self.client = None;
            }
            let e = anyhow::Error::from(e).context(format!("upserting windows into {}", self.table));
            if transient { WriteError::Transient(e) } else { WriteError::Fatal(e) }
        })
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

/// A value as a parameter of its column's type (a null typed too).
fn param(value: &Value, kind: Kind) -> Param {
    match (value, kind) {
        (Value::Int(v), _) => Box::new(*v),
        (Value::Float(v), _) => Box::new(*v),
        (Value::Text(v), _) => Box::new(v.clone()),
        (Value::Bool(v), _) => Box::new(*v),
        (Value::Time(ms), _) => Box::new(DateTime::from_timestamp_millis(*ms)),
        (Value::Null, Kind::Int) => Box::new(None::<i64>),
        (Value::Null, Kind::Float) => Box::new(None::<f64>),
        (Value::Null, Kind::Text) => Box::new(None::<String>),
        (Value::Null, Kind::Bool) => Box::new(None::<bool>),
        (Value::Null, Kind::Time) => Box::new(None::<DateTime<chrono::Utc>>),
    }
}

/// An existing table must have every column of the shape, with its type.
async fn check_columns(client: &Client, schema: &str, table: &str, shape: &Shape) -> Result<()> {
    let have = super::write::column_types(client, schema, table).await?;
    let wanted = shape.columns.iter().map(|c| (c.name.as_str(), c.kind.postgres()));
    crate::sinks::check_have(&format!("{schema}.{table}"), &have, wanted)
}

impl KeyedWriter for PostgresWindows {
    fn location(&self) -> String {
        self.table.clone()
    }

    fn upsert<'a>(&'a mut self, rows: &'a [Vec<Value>]) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(PostgresWindows::upsert(self, rows))
    }
}
