//! A connection to PostgreSQL: the URL, with its password, only from
//! RTDS_POSTGRES_URL or the file named by RTDS_POSTGRES_URL_FILE; TLS verified
//! against RTDS_POSTGRES_CA_FILE.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Socket};

use super::PostgresOpts;
use crate::error::usage;
use crate::secrets;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured database, parsed; a missing or malformed URL is a usage error.
pub fn config() -> Result<Config> {
    let Some(url) = secrets::env("RTDS_POSTGRES_URL")? else {
        return usage("PostgreSQL is not configured: set RTDS_POSTGRES_URL (or RTDS_POSTGRES_URL_FILE)");
    };
    match url.parse::<Config>() {
        Ok(mut cfg) => {
            cfg.connect_timeout(CONNECT_TIMEOUT);
            Ok(cfg)
        }
        // The parse error never echoes the URL, so the password stays out of logs.
        Err(e) => usage(format!("RTDS_POSTGRES_URL is not a valid PostgreSQL URL: {e}")),
    }
}

/// `host:port/db` of a config, for messages: never the password.
pub fn describe(cfg: &Config) -> String {
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", cfg.get_dbname().unwrap_or(""))
}

/// Connect, spawning the connection task; fails after the connect timeout.
/// With `--postgres-tls` TLS is required (a server that does not offer it is
/// refused, never answered in plaintext) and the server's certificate is
/// verified against RTDS_POSTGRES_CA_FILE (else the system's CAs), and its
/// name against the host connected to.
pub async fn connect(opts: &PostgresOpts) -> Result<Client> {
    let mut cfg = config()?;
    if opts.postgres_tls {
        cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    let target = describe(&cfg);
    let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, async {
        if opts.postgres_tls { open(&cfg, tls_connector()?).await } else { open(&cfg, tokio_postgres::NoTls).await }
    })
    .await
    .map_err(|_| anyhow::anyhow!("timed out after {CONNECT_TIMEOUT:?}"))
    .and_then(|r| r)
    .with_context(|| format!("connecting to PostgreSQL at {target}"))?;
    Ok(client)
}

/// Connect with `tls` and drive the connection on its own task.
async fn open<T>(cfg: &Config, tls: T) -> Result<Client>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, conn) = cfg.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!("PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}

/// TLS that verifies the server against RTDS_POSTGRES_CA_FILE alone, when
/// given (as Cassandra's), else against the system's CAs.
fn tls_connector() -> Result<postgres_openssl::MakeTlsConnector> {
    use openssl::ssl::{SslConnector, SslMethod};
    use openssl::x509::store::X509StoreBuilder;
    // The connector starts with the system's CAs loaded.
    let mut builder = SslConnector::builder(SslMethod::tls()).context("creating a TLS context")?;
    if let Some(ca) = std::env::var_os("RTDS_POSTGRES_CA_FILE") {
        let read = || -> Result<openssl::x509::store::X509Store> {
            let pem = std::fs::read(&ca)?;
            let mut store = X509StoreBuilder::new()?;
            for cert in openssl::x509::X509::stack_from_pem(&pem)? {
                store.add_cert(cert)?;
            }
            Ok(store.build())
        };
        let store = read().with_context(|| format!("reading the PostgreSQL CA file {}", ca.to_string_lossy()))?;
        builder.set_cert_store(store);
    }
    Ok(postgres_openssl::MakeTlsConnector::new(builder.build()))
}

/// The server's version string.
pub async fn server_version(client: &Client) -> Result<String> {
    let row = client.query_one("SHOW server_version", &[]).await.context("querying server_version")?;
    Ok(row.get(0))
}
