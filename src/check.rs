//! `rtds check`: connect to each configured service, report its state and
//! version, exit 1 naming what is unreachable.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{CheckArgs, GlobalOpts, Service};
use crate::sinks::{cassandra, postgres};

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

pub async fn run(global: &GlobalOpts, args: &CheckArgs) -> Result<()> {
    let probes = args.only.iter().map(|s| probe(*s, global, args));
    let services = futures::future::join_all(probes).await;
    for s in &services {
        let state = if s.ok { "ok" } else { "UNREACHABLE" };
        println!("{:<10} {:<12} {:<22} {}", format!("{:?}", s.service).to_lowercase(), state, s.address, s.detail);
    }
    let failed: Vec<String> =
        services.iter().filter(|s| !s.ok).map(|s| format!("{:?} at {}", s.service, s.address).to_lowercase()).collect();
    crate::summary::keep(&Summary { stage: "check", ok: failed.is_empty(), services })?;
    if failed.is_empty() { Ok(()) } else { anyhow::bail!("unreachable: {}", failed.join(", ")) }
}

async fn probe(service: Service, global: &GlobalOpts, args: &CheckArgs) -> ServiceState {
    let start = Instant::now();
    let (address, result) = match service {
        Service::Kafka => (global.brokers.clone(), kafka(global).await),
        Service::Cassandra => (args.cassandra.cassandra_nodes.join(","), cassandra(args).await),
        Service::Postgres => (
            postgres::config().map(|c| postgres::describe(&c)).unwrap_or_else(|_| "(not configured)".into()),
            postgres(args).await,
        ),
    };
    let millis = start.elapsed().as_millis();
    match result {
        Ok((version, detail)) => ServiceState { service, address, ok: true, version: Some(version), detail, millis },
        Err(e) => {
            tracing::error!("{service:?}: {e:#}");
            ServiceState { service, address, ok: false, version: None, detail: format!("{e:#}"), millis }
        }
    }
}

async fn kafka(global: &GlobalOpts) -> Result<(String, String)> {
    let info = crate::kafka::cluster_info(global).await?;
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

async fn cassandra(args: &CheckArgs) -> Result<(String, String)> {
    let session = cassandra::connect(&args.cassandra).await?;
    let version = cassandra::server_version(&session).await?;
    Ok((version.clone(), format!("Cassandra {version}")))
}

async fn postgres(args: &CheckArgs) -> Result<(String, String)> {
    let client = postgres::connect(&args.postgres).await?;
    let version = postgres::server_version(&client).await?;
    Ok((version.clone(), format!("PostgreSQL {version}")))
}
