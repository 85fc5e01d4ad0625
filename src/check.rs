//! `rtds check`: connect to each configured service, report its state and
//! version, exit 1 naming what is unreachable. The schema registry is probed
//! when one is configured (only the Avro formats need it).

use std::fmt;
use std::time::Instant;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde::Serialize;

use crate::kafka::ClientOpts;
use crate::registry::{Registry, RegistryOpts};
use crate::sinks::{Sink, SinkOpts};

/// The options of `rtds check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Every sink's own options, to reach its server (src/sinks/).
    #[command(flatten)]
    pub sinks: SinkOpts,
    /// Services to check (default: all).
    #[arg(long, env = "RTDS_CHECK", value_delimiter = ',', value_parser = Service::parser(),
          default_values_t = Service::all())]
    pub only: Vec<Service>,
}

/// What `rtds check` reaches: Kafka, the schema registry, or the server of a
/// sink that has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Kafka,
    Registry,
    Sink(Sink),
}

impl Service {
    fn all() -> Vec<Service> {
        let sinks = Sink::ALL.iter().filter(|s| s.server().is_some()).map(|s| Service::Sink(*s));
        [Service::Kafka, Service::Registry].into_iter().chain(sinks).collect()
    }

    fn name(self) -> &'static str {
        match self {
            Service::Kafka => "kafka",
            Service::Registry => "registry",
            Service::Sink(s) => s.name(),
        }
    }

    fn parser() -> impl TypedValueParser<Value = Service> {
        let names: Vec<&'static str> = Service::all().into_iter().map(Service::name).collect();
        PossibleValuesParser::new(names)
            .map(|n| Service::all().into_iter().find(|s| s.name() == n).expect("a possible value"))
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl Serialize for Service {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[derive(Debug, Serialize)]
struct ServiceState {
    service: Service,
    address: String,
    ok: bool,
    version: Option<String>,
    detail: String,
    millis: u128,
}

#[derive(Debug, Serialize)]
struct Summary {
    stage: &'static str,
    ok: bool,
    services: Vec<ServiceState>,
}

pub async fn run(client: &ClientOpts, registry: &RegistryOpts, args: &CheckArgs) -> Result<()> {
    let registry = Registry::new(registry)?;
    let probes = args.only.iter().map(|s| probe(*s, client, registry.as_ref(), &args.sinks));
    let services = futures::future::join_all(probes).await;
    for s in &services {
        let state = if s.ok { "ok" } else { "UNREACHABLE" };
        println!("{:<10} {:<12} {:<22} {}", s.service, state, s.address, s.detail);
    }
    let failed: Vec<String> =
        services.iter().filter(|s| !s.ok).map(|s| format!("{} at {}", s.service, s.address)).collect();
    crate::summary::keep(&Summary { stage: "check", ok: failed.is_empty(), services })?;
    if failed.is_empty() { Ok(()) } else { anyhow::bail!("unreachable: {}", failed.join(", ")) }
}

async fn probe(service: Service, client: &ClientOpts, registry: Option<&Registry>, sinks: &SinkOpts) -> ServiceState {
    let start = Instant::now();
    let (address, result) = match (service, registry) {
        (Service::Registry, None) => {
            let detail = "not configured (RTDS_SCHEMA_REGISTRY_URL unset: the JSON formats need none)".into();
            return ServiceState { service, address: "-".into(), ok: true, version: None, detail, millis: 0 };
        }
        (Service::Registry, Some(r)) => (r.url().to_owned(), registry_version(r).await),
        (Service::Kafka, _) => (client.brokers.clone(), kafka(client).await),
        (Service::Sink(sink), _) => (sink.address(sinks), server(sink, sinks).await),
    };
    let millis = start.elapsed().as_millis();
    match result {
        Ok((version, detail)) => ServiceState { service, address, ok: true, version: Some(version), detail, millis },
        Err(e) => {
            tracing::error!("{service}: {e:#}");
            ServiceState { service, address, ok: false, version: None, detail: format!("{e:#}"), millis }
        }
    }
}

async fn kafka(client: &ClientOpts) -> Result<(String, String)> {
    let info = crate::kafka::cluster_info(client).await?;
    let detail = format!(
        "cluster {} with {} broker(s) [{}], {} topic(s); client {}",
        info.cluster_id.as_deref().unwrap_or("?"),
        info.brokers.len(),
        info.brokers.join(", "),
        info.topics,
        info.client
    );
    // Brokers do not report their version over the protocol; name the client that spoke to them.
    Ok((format!("unknown (not reported by brokers); {}", info.client), detail))
}

async fn registry_version(registry: &Registry) -> Result<(String, String)> {
    let version = registry.version().await?;
    Ok((version.clone(), format!("schema registry {version}")))
}

async fn server(sink: Sink, opts: &SinkOpts) -> Result<(String, String)> {
    let version = sink.server_version(opts).await?;
    Ok((version.clone(), format!("{} {version}", sink.server().unwrap_or(sink.name()))))
}
