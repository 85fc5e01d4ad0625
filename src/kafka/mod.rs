//! Kafka for every stage: client configuration (brokers, user settings, secrets
//! from files), the producer settings of docs/ARCHITECTURE.md, topic creation and the
//! cluster probe of `rtds check`; producing (`produce`) and consuming with
//! commit-after-ack (`consume`) live in the submodules.

mod batch;
mod consume;
pub mod offsets;
mod produce;
mod reports;
mod requests;
mod settings;

pub use batch::{Batch, BatchRecord, INGESTED_AT, REPLAYS};
pub use consume::{
    GATHER, Profile, Reading, Rebalances, Source, check_consumer_settings, lag, prefetch_settings, range_key,
    read_spans,
};
pub use produce::{
    LINGER_BATCH, LINGER_STREAM, PRODUCER_DEFAULTS, Producer, Transactional, flush, headers, producer, send,
    send_blocking,
};
pub use requests::{ClientRequests, sent as requests_sent};
pub use settings::{ClientOpts, Compression, TopicOpts};

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::usage;

/// librdkafka's client-level errors, for our producer and consumer contexts:
/// warnings. librdkafka retries them itself (a broker away: it reconnects, and
/// on a cluster the others carry on); what fails for good comes back from the
/// call that needed it, with its context. End of partition is how a bounded
/// run knows it is done, not a fault.
pub(crate) fn client_error(error: &rdkafka::error::KafkaError, reason: &str) {
    use rdkafka::error::KafkaError;
    if matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
        tracing::trace!("{reason}");
    } else {
        tracing::warn!("Kafka: {error}: {reason}");
    }
}

/// librdkafka's log lines at its levels, except a failed connection to a
/// broker (`FAIL`): a warning, for the reason `client_error` gives.
pub(crate) fn client_log(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error if fac != "FAIL" => {
            tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
        }
        L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
            tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}")
        }
        L::Notice | L::Info => tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}"),
        L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
    }
}

/// How long a metadata request or topic creation may take before we call the
/// cluster unreachable.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A client configuration: brokers, then `defaults`, then the settings file,
/// then `--kafka-option`s (later ones win, so users can override anything).
pub fn client_config(client: &ClientOpts, defaults: &[(&str, &str)]) -> Result<ClientConfig> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &client.brokers)
        .set("client.id", "rtds")
        .set("socket.connection.setup.timeout.ms", "10000");
    for (k, v) in defaults {
        cfg.set(*k, *v);
    }
    if let Some(path) = &client.kafka_config {
        for (k, v) in read_settings_file(path)? {
            cfg.set(k, v);
        }
    }
    for (k, v) in &client.kafka_options {
        cfg.set(k, v);
    }
    Ok(cfg)
}

/// A `key=value` a line file; blank lines and `#` comments skipped.
fn read_settings_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return usage(format!("cannot read Kafka settings file {}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match crate::validate::parse_key_value(line) {
            Ok(kv) => out.push(kv),
            Err(_) => {
                return usage(format!("{}:{}: expected key=value", path.display(), n + 1));
            }
        }
    }
    Ok(out)
}

/// Create the `topics` that do not exist (one request), as `how` says;
/// existing ones are left as they are.
pub async fn ensure_topics(client: &ClientOpts, topics: &[&str], how: &TopicOpts) -> Result<()> {
    let TopicOpts { partitions, replication_factor: replication } = *how;
    let admin: AdminClient<DefaultClientContext> =
        client_config(client, &[])?.create().context("creating a Kafka admin client")?;
    let new: Vec<NewTopic> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication))).collect();
    let opts = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)).request_timeout(Some(METADATA_TIMEOUT));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .with_context(|| format!("creating topics {} on Kafka at {}", topics.join(", "), client.brokers))?;
    for r in results {
        match r {
            Ok(topic) => tracing::info!(topic, partitions, replication, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                anyhow::bail!("creating topic {name} on Kafka at {}: {code}", client.brokers)
            }
        }
    }
    Ok(())
}

/// The value of a record's header `name`, if it has one.
pub fn header<'a, M: Message>(m: &'a M, name: &str) -> Option<&'a [u8]> {
    m.headers()?.iter().find(|h| h.key == name).and_then(|h| h.value)
}

/// What `rtds check` reports about the cluster.
#[derive(Debug, serde::Serialize)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub brokers: Vec<String>,
    pub topics: usize,
    /// Kafka does not reveal its version over the protocol; this is our client's.
    pub client: String,
}

/// Ask the cluster for its metadata, within `METADATA_TIMEOUT`.
pub async fn cluster_info(client: &ClientOpts) -> Result<ClusterInfo> {
    let cfg = client_config(client, &[])?;
    let brokers = client.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = cfg.create().context("creating a Kafka client")?;
        let md = consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .with_context(|| format!("connecting to Kafka at {brokers}"))?;
        let (_, version) = rdkafka::util::get_rdkafka_version();
        Ok(ClusterInfo {
            cluster_id: consumer.client().fetch_cluster_id(METADATA_TIMEOUT),
            brokers: md.brokers().iter().map(|b| format!("{}:{} (id {})", b.host(), b.port(), b.id())).collect(),
            topics: md.topics().iter().filter(|t| !t.name().starts_with("__")).count(),
            client: format!("librdkafka {version}"),
        })
    })
    .await?
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rdkafka::config::RDKafkaLogLevel;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    /// What `f` logs at info and above, as text lines.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Capture(Arc::default());
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || out.clone()).finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_broker_out_of_reach_is_a_warning_other_errors_stay_errors() {
        let failed = logged(|| super::client_log(RDKafkaLogLevel::Error, "FAIL", "Connect to 127.0.0.1:19096 refused"));
        assert!(failed.contains("WARN") && !failed.contains("ERROR"), "{failed}");
        let ssl = logged(|| super::client_log(RDKafkaLogLevel::Error, "SSL", "certificate verify failed"));
        assert!(ssl.contains("ERROR"), "{ssl}");
        let transport = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        let global = logged(|| super::client_error(&transport, "127.0.0.1:19096/3: Connect failed"));
        assert!(global.contains("WARN") && global.contains("19096"), "{global}");
        let eof = KafkaError::Global(RDKafkaErrorCode::PartitionEOF);
        assert_eq!(logged(|| super::client_error(&eof, "end of partition")), "");
    }
}
