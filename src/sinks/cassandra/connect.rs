//! A session to Cassandra: credentials only from RTDS_CASSANDRA_USER /
//! RTDS_CASSANDRA_PASSWORD(_FILE), TLS verified against RTDS_CASSANDRA_CA_FILE.

use anyhow::{Context, Result};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use super::CassandraOpts;
use crate::secrets;

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
