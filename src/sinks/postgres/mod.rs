//! The PostgreSQL sink (tokio-postgres): rows upserted by id through binary
//! COPY. The URL, with its password, only from the environment.

mod connect;
mod options;
mod read_back;
mod windows;
mod write;

pub use connect::{config, connect, describe, server_version};
pub use options::PostgresOpts;
pub use write::PostgresWriter;

use anyhow::Result;

use super::keyed::{KeyedWriter, Shape};
use super::{Connector, Held, Writer};

/// The sink's `Connector`.
pub struct Postgres;

impl Connector for Postgres {
    type Options = PostgresOpts;

    const ENV_ONLY: &'static [(&'static str, &'static str)] = &[
        ("RTDS_POSTGRES_URL", "PostgreSQL URL, with its password (or RTDS_POSTGRES_URL_FILE: a file holding it)"),
        ("RTDS_POSTGRES_CA_FILE", "CA certificate(s) to verify PostgreSQL's TLS certificate"),
    ];

    const SERVER: Option<&'static str> = Some("PostgreSQL");

    async fn open(opts: &PostgresOpts, table: &str) -> Result<Box<dyn Writer>> {
        Ok(Box::new(PostgresWriter::open(opts, table).await?))
    }

    async fn open_keyed(opts: &PostgresOpts, table: &str, shape: &Shape) -> Result<Box<dyn KeyedWriter>> {
        Ok(Box::new(windows::PostgresWindows::open(opts, table, shape).await?))
    }

    async fn read_back(opts: &PostgresOpts, store: &str, ids: &[String]) -> Result<Held> {
        let table = super::qualified(store)?;
        let client = connect(opts).await?;
        Ok(Held::upserted(read_back::present(&client, table, &super::uuids(ids)).await?))
    }

    fn address(_: &PostgresOpts) -> String {
        config().map(|c| describe(&c)).unwrap_or_else(|_| "(not configured)".into())
    }

    async fn server_version(opts: &PostgresOpts) -> Result<String> {
        server_version(&connect(opts).await?).await
    }
}
