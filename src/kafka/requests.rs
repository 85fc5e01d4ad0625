//! The requests each Kafka client of the process sent, by type, from
//! librdkafka's statistics: collected only when a user turns them on
//! (`statistics.interval.ms`), then exported as metrics and put in the run's
//! summary. What a stage costs the broker is mostly its requests a second
//! (bench/README.md, "Cheap at the rates users run").

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What one client has sent since it was created, as of its latest statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClientRequests {
    /// How long the client had existed (librdkafka's `age`).
    pub seconds: f64,
    /// Requests sent, by Kafka request type (`Produce`, `Fetch`, ...), summed over the brokers.
    pub sent: BTreeMap<String, u64>,
}

/// Per client role (`producer`, `consumer`), its latest figures.
static LATEST: Mutex<BTreeMap<&'static str, ClientRequests>> = Mutex::new(BTreeMap::new());

/// The part of librdkafka's statistics read here (serde skips the rest).
#[derive(Deserialize)]
struct Statistics {
    age: u64,
    brokers: HashMap<String, Broker>,
}

#[derive(Deserialize)]
struct Broker {
    #[serde(default)]
    req: HashMap<String, u64>,
}

/// Parse one statistics document of the client in `role`.
fn parse(json: &[u8]) -> Result<ClientRequests, serde_json::Error> {
    let stats: Statistics = serde_json::from_slice(json)?;
    let mut sent = BTreeMap::new();
    for broker in stats.brokers.into_values() {
        for (kind, n) in broker.req.into_iter().filter(|(_, n)| *n > 0) {
            *sent.entry(kind).or_insert(0) += n;
        }
    }
    Ok(ClientRequests { seconds: stats.age as f64 / 1e6, sent })
}

/// A client's statistics arrived (its context's `stats_raw`): keep the
/// counts and export them as `rtds_kafka_requests_total{client,request}`
/// with `rtds_kafka_client_seconds{client}` (a rate is the change of one over
/// the change of the other, whatever the statistics' interval).
pub(crate) fn record(role: &'static str, json: &[u8]) {
    let requests = match parse(json) {
        Ok(r) => r,
        Err(e) => return tracing::debug!("librdkafka statistics not read: {e}"),
    };
    for (kind, n) in &requests.sent {
        metrics::counter!("rtds_kafka_requests_total", "client" => role, "request" => kind.clone()).absolute(*n);
    }
    metrics::gauge!("rtds_kafka_client_seconds", "client" => role).set(requests.seconds);
    LATEST.lock().unwrap_or_else(|e| e.into_inner()).insert(role, requests);
}

/// The latest figures of every client, if statistics were on.
pub fn sent() -> Option<BTreeMap<&'static str, ClientRequests>> {
    let latest = LATEST.lock().unwrap_or_else(|e| e.into_inner());
    (!latest.is_empty()).then(|| latest.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn requests_are_summed_over_brokers_by_type() {
        let json = br#"{"name":"rtds#producer-1","age":2500000,"tx":9,
            "brokers":{"127.0.0.1:9092/1":{"tx":7,"req":{"Produce":5,"Metadata":2,"Fetch":0}},
                       "GroupCoordinator":{"tx":2,"req":{"Metadata":1,"Heartbeat":1}},
                       "127.0.0.1:9094/3":{"tx":0}}}"#;
        let r = super::parse(json).unwrap();
        assert_eq!(r.seconds, 2.5);
        let sent: Vec<(&str, u64)> = r.sent.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(sent, [("Heartbeat", 1), ("Metadata", 3), ("Produce", 5)]);
        assert!(super::parse(b"{\"age\":1}").is_err(), "no brokers: not statistics");
    }
}
