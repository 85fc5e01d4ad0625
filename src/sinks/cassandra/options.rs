//! Cassandra's options: where the nodes are, the keyspace and how it is
//! replicated, the write consistency and concurrency, TLS.

use std::time::Duration;

use anyhow::Result;
use scylla::statement::Consistency;

use crate::error::{UsageError, usage};

/// Cassandra connection settings. User and password come only from
/// RTDS_CASSANDRA_USER / RTDS_CASSANDRA_PASSWORD (or RTDS_CASSANDRA_PASSWORD_FILE).
#[derive(Debug, Clone, clap::Args)]
pub struct CassandraOpts {
    /// Cassandra contact points, comma-separated host:port.
    #[arg(long, env = "RTDS_CASSANDRA_NODES", default_value = "127.0.0.1:9042", value_delimiter = ',')]
    pub cassandra_nodes: Vec<String>,
    /// Keyspace.
    #[arg(long, env = "RTDS_KEYSPACE", default_value = "spark_streams", value_parser = crate::validate::parse_identifier)]
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
    #[arg(long, env = "RTDS_CONNECT_TIMEOUT", default_value = "10s", value_parser = crate::validate::parse_duration)]
    pub connect_timeout: Duration,
}

/// `SimpleStrategy:1` or `NetworkTopologyStrategy:dc1=3,dc2=2` as a CQL map.
pub(super) fn replication_map(spec: &str) -> Result<String> {
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

pub(super) fn parse_consistency(s: &str) -> Result<Consistency> {
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
