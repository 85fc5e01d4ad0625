//! The Kafka settings every stage takes: how to reach the cluster, how to
//! create a missing topic, how to compress what it produces. The command line
//! (src/cli.rs) flattens them into its subcommands; nothing here reads it.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::validate;

/// How to reach the cluster: brokers, then librdkafka settings from a file and the command line.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "RTDS_BROKERS", default_value = "127.0.0.1:9092", global = true,
          value_parser = validate::parse_brokers)]
    pub brokers: String,

    /// Any librdkafka setting as key=value (repeatable; in the env, comma-separated).
    /// Secret keys (*password*, *secret*, *.key*) are refused here: put them in
    /// RTDS_KAFKA_OPTIONS or in the file of --kafka-config.
    #[arg(long = "kafka-option", env = "RTDS_KAFKA_OPTIONS", value_delimiter = ',',
          global = true, value_parser = validate::parse_key_value)]
    pub kafka_options: Vec<(String, String)>,

    /// A file of librdkafka settings, one key=value a line (# comments): the place for SASL/TLS secrets.
    #[arg(long, env = "RTDS_KAFKA_CONFIG", global = true)]
    pub kafka_config: Option<PathBuf>,
}

/// How a stage creates the topics it reads and writes when they are missing
/// (on a cluster: replication 3 with the brokers' min.insync.replicas=2).
#[derive(Debug, Clone, Copy, Args)]
pub struct TopicOpts {
    /// Partitions of a topic the stage creates.
    #[arg(long, env = "RTDS_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Replication factor of a topic the stage creates.
    #[arg(long, env = "RTDS_REPLICATION_FACTOR", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..=16))]
    pub replication_factor: i32,
}

/// The producer's compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}
