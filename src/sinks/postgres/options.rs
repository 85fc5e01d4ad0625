//! PostgreSQL's options. The URL (with its password) is not one: it comes
//! only from the environment (src/sinks/postgres/connect.rs).

/// PostgreSQL settings. The URL (with its password) comes only from the
/// environment: RTDS_POSTGRES_URL, or a file named by RTDS_POSTGRES_URL_FILE.
#[derive(Debug, Clone, clap::Args)]
pub struct PostgresOpts {
    /// PostgreSQL schema of the table (created if absent).
    #[arg(long, env = "RTDS_PG_SCHEMA", default_value = "public", value_parser = crate::validate::parse_identifier)]
    pub pg_schema: String,
    /// Require TLS to PostgreSQL (a server without it is refused), verifying its certificate against
    /// RTDS_POSTGRES_CA_FILE (else the system's CAs) and the host name connected to.
    #[arg(long, env = "RTDS_POSTGRES_TLS")]
    pub postgres_tls: bool,
    /// Connections a batch is spread over (by id), each upserting its share in its own transaction.
    #[arg(long, env = "RTDS_PG_CONNECTIONS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub pg_connections: u32,
}
