//! The Cassandra sink (scylla driver): rows upserted by id with a prepared
//! INSERT. Credentials only from the environment.

mod connect;
mod options;
mod read_back;
mod windows;
mod write;

pub use connect::{connect, server_version};
pub use options::CassandraOpts;
pub use write::CassandraWriter;

use anyhow::Result;

use super::keyed::{KeyedWriter, Shape};
use super::{Connector, Held, Writer};

/// The sink's `Connector`.
pub struct Cassandra;

impl Connector for Cassandra {
    type Options = CassandraOpts;

    const ENV_ONLY: &'static [(&'static str, &'static str)] = &[
        ("RTDS_CASSANDRA_USER", "Cassandra user"),
        ("RTDS_CASSANDRA_PASSWORD", "Cassandra password (or RTDS_CASSANDRA_PASSWORD_FILE: a file holding it)"),
        ("RTDS_CASSANDRA_CA_FILE", "CA certificate(s) to verify Cassandra's TLS certificate"),
    ];

    const SERVER: Option<&'static str> = Some("Cassandra");

    async fn open(opts: &CassandraOpts, table: &str) -> Result<Box<dyn Writer>> {
        Ok(Box::new(CassandraWriter::open(opts, table).await?))
    }

    async fn open_keyed(opts: &CassandraOpts, table: &str, shape: &Shape) -> Result<Box<dyn KeyedWriter>> {
        Ok(Box::new(windows::CassandraWindows::open(opts, table, shape).await?))
    }

    async fn read_back(opts: &CassandraOpts, store: &str, ids: &[String]) -> Result<Held> {
        let table = super::qualified(store)?;
        let session = connect(opts).await?;
        Ok(Held::upserted(read_back::present(&session, table, &super::uuids(ids)).await?))
    }

    fn address(opts: &CassandraOpts) -> String {
        opts.cassandra_nodes.join(",")
    }

    async fn server_version(opts: &CassandraOpts) -> Result<String> {
        server_version(&connect(opts).await?).await
    }
}
